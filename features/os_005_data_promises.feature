# language: pt
Funcionalidade: OS 005 — As promessas sobre os dados: eliminação que dura, ordem, cursor, texto, concorrência
  Ordem de Serviço OS-CODEX-AURORA-CRM-INGEST-20260110-005, critérios AC-14 a AC-19.
  Cada cenário roda no SQLite e no PostgreSQL vivos (um banco descartável por cenário): sem um
  servidor PostgreSQL configurado, o exemplo do PostgreSQL é pulado (e não prova nada); com
  AURORA_REQUIRE_POSTGRES, falha. Os casos vêm de relatos públicos de falhas de CRMs e de caixas
  de entrada de WhatsApp: mensagem reentregue depois da eliminação, lote fora de ordem, cursor
  que pula linha confirmada tarde, NUL no PostgreSQL, movimentos de etapa simultâneos no SQLite,
  id de mensagem reaproveitado com outro conteúdo.

  @OS-005 @AC-14
  Esquema do Cenário: Uma mensagem reentregue depois da eliminação não grava nada (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou a mensagem "meu CPF é 123.456.789-00" de "5511987654321" com o id "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBD"
    Quando eu faço "DELETE /contacts/{contact_id}"
    Então a resposta tem o status 200
    Quando o WhatsApp reentrega a mensagem "meu CPF é 123.456.789-00" de "551187654321" com o id "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBD"
    Então a resposta tem o status 410
    E a resposta é um problem+json com o status 410
    Quando o WhatsApp reentrega num lote a mensagem "meu CPF é 123.456.789-00" de "5511987654321" com o id "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBD"
    Então o item 1 do lote é recusado com o status 410
    Quando o WhatsApp reentrega a mensagem "outra pessoa" de "5521988887777" com o id "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBD"
    Então a resposta tem o status 409
    E nenhuma linha do banco guarda "meu CPF é 123.456.789-00, wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBD, 87654321, outra pessoa"
    E a tabela "crm_contacts" do app tem 1 linha(s)
    E a tabela "crm_erasure_tombstones" do app tem 1 linha(s)

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-005 @AC-14
  Esquema do Cenário: Eliminar de novo não muda nada, e o contato eliminado não recebe negócios (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou a mensagem "oi" de "5511999999999" com o id "wamid.1"
    E que o contato tem um negócio "rodobens" de "85000.00"
    Quando eu faço "DELETE /contacts/{contact_id}"
    Então a resposta tem o status 200
    Quando eu faço "DELETE /contacts/{contact_id}" de novo
    Então a resposta tem o status 200
    E a segunda eliminação diz que o contato já estava eliminado, com a data da primeira
    E nada do contato, das mensagens e dos negócios mudou com a segunda eliminação
    Quando eu faço "POST /deals" com o corpo:
      """json
      {"contact_id": "{contact_id}", "title": "Consórcio novo", "pipeline": "rodobens"}
      """
    Então a resposta tem o status 409
    E a resposta é um problem+json com o status 409
    E a tabela "crm_deals" do app tem 1 linha(s)

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-005 @AC-14
  Esquema do Cenário: Uma mensagem ainda em trânsito quando a eliminação começa também é eliminada (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou a mensagem "primeira" de "5511999999999" com o id "wamid.1"
    Quando a mensagem "meu endereço é Rua das Flores 10" de "5511999999999" é gravada por uma transação que fica aberta enquanto eu faço "DELETE /contacts/{contact_id}"
    Então nenhuma linha do banco guarda "meu endereço é Rua das Flores 10"

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-005 @AC-15
  Esquema do Cenário: As mensagens de um lote e as de um commit em grupo voltam na ordem em que chegaram (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    Quando eu envio ao "/ingest/messages" um lote de "5511999999999" com as mensagens "um, dois, três, quatro, cinco" e os ids "wamid.e, wamid.d, wamid.c, wamid.b, wamid.a"
    Então a resposta tem o status 200
    E percorrer as mensagens do contato com limit 2 traz "cinco, quatro, três, dois, um"
    E as mensagens recentes do contato são, em "GET /contacts/{contact_id}", "cinco, quatro, três, dois, um"
    E a exportação do contato traz as mensagens "um, dois, três, quatro, cinco"
    E as mensagens "seis, sete, oito, nove, dez" de "5511988887777", enviadas juntas a um commit em grupo, são exportadas nessa ordem

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-005 @AC-16
  Esquema do Cenário: Quem segue o cursor vê cada contato exatamente uma vez enquanto outros gravam (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    Quando um contato é gravado por uma transação que fica aberta enquanto outros 2 contatos são gravados pela API
    E eu percorro "GET /contacts" seguindo o next_cursor
    E a transação aberta faz commit
    E eu consulto "GET /contacts" de novo a partir do end_cursor
    Então eu vi cada contato do banco exatamente uma vez, na ordem da lista
    E com "crm-core serve" no mesmo banco e clientes que gravam por 3 segundos, um leitor que segue o next_cursor e o end_cursor vê cada contato e cada negócio exatamente uma vez, e nenhuma leitura das mensagens perde uma mais antiga

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-005 @AC-17
  Esquema do Cenário: NUL ou um surrogate isolado em qualquer parâmetro ou campo de texto dá 4xx, nunca 500 (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou mensagens de "5511999999999"
    Quando eu faço "GET /contacts?source=whatsapp&sender_id=%00"
    Então a resposta tem o status 422
    E a resposta é um problem+json com o status 422
    Quando eu faço "POST /deals" com o corpo:
      """json
      {"contact_id": "{contact_id}", "title": "Consórcio\u0000", "pipeline": "rodobens"}
      """
    Então a resposta tem o status 422
    E a resposta é um problem+json com o status 422
    E cada parâmetro e cada campo de texto de cada operação do esquema OpenAPI, com NUL ou um surrogate isolado, dá um problem+json 4xx
    # o único negócio gravado é o válido que o passo anterior cria para ter um caminho /deals/{id}
    E a tabela "crm_deals" do app tem 1 linha(s)

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-005 @AC-18
  Esquema do Cenário: Movimentos de etapa simultâneos deixam um histórico coerente (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou mensagens de "5511999999999"
    E que o contato tem 20 negócios "rodobens"
    Quando 4 clientes movem cada negócio ao mesmo tempo para "qualificacao, perdido, qualificacao, perdido"
    Então cada movimento respondeu 200 ou 409
    E o histórico de cada negócio é uma cadeia de transições permitidas que termina na etapa do negócio

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-005 @AC-18
  Esquema do Cenário: 32 clientes que leem e gravam ao mesmo tempo não recebem 503 (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    Então com "crm-core serve" no mesmo banco, 32 clientes que gravam mensagens e negócios, movem negócios e listam contatos por 3 segundos não recebem nenhuma resposta 5xx

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-005 @AC-19
  Esquema do Cenário: Um message_id já gravado com outro conteúdo ou de outro remetente é 409 e nomeia a mensagem gravada (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "ingest"
    Quando eu envio ao "/ingest/message" o corpo:
      """json
      {"source": "whatsapp", "sender_id": "5511999999999", "content": "oi", "metadata": {"message_id": "wamid.x"}}
      """
    E eu envio ao "/ingest/message" o corpo:
      """json
      {"source": "whatsapp", "sender_id": "5511999999999", "content": "outro texto", "metadata": {"message_id": "wamid.x"}}
      """
    E eu envio ao "/ingest/message" o corpo:
      """json
      {"source": "whatsapp", "sender_id": "5521988887777", "content": "oi", "metadata": {"message_id": "wamid.x"}}
      """
    E eu envio ao "/ingest/message" o corpo:
      """json
      {"source": "whatsapp", "sender_id": "551199999999", "content": "oi", "metadata": {"message_id": "wamid.x", "retry": 2}}
      """
    Então as respostas tiveram os status "202, 409, 409, 200"
    E as respostas 2 e 3 são problem+json que nomeiam a mensagem gravada na resposta 1
    E as respostas 1 e 4 trazem o mesmo recibo
    E a tabela "crm_messages" do app tem 1 linha(s)

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |
