# language: pt
Funcionalidade: OS 005 — Ingestão que não perde nada, segurança e API de Contatos e Negócios
  Ordem de Serviço OS-CODEX-AURORA-CRM-INGEST-20260110-005.
  Os Critérios de Aceite AC-01 a AC-12 são provados pelos cenários marcados com o seu ID;
  o AC-13 (Gates PASS) é provado pelo resultado dos gates, e nenhum cenário o marca.
  Os cenários de API rodam o app num arquivo SQLite migrado pelo Alembic; o do AC-01 com mensagens
  já gravadas roda o app nos dois bancos vivos. Os cenários por banco
  rodam no SQLite e no PostgreSQL: ao vivo quando há um servidor (AURORA_TEST_POSTGRES_URL),
  senão sobre o DDL que o Alembic gera para o dialeto postgresql; o cenário registra qual usou.

  @OS-005 @AC-01
  Cenário: A mensagem aceita é gravada com o seu contato antes da resposta
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "ingest"
    Quando eu envio ao "/ingest/message" o corpo:
      """json
      {
        "source": "whatsapp",
        "sender_id": "5511999999999",
        "content": "Olá, quero simular um consórcio",
        "metadata": {"message_id": "wamid.HBgNNTUxMTk5OTk5OTk5ORUCABEYEjQ", "profile_name": "Ana"}
      }
      """
    Então a resposta tem o status 202
    E a resposta é um recibo "accepted" com um id e a hora de recebimento em UTC
    E a tabela "crm_messages" do app tem 1 linha(s)
    E a tabela "crm_contacts" do app tem 1 linha(s)
    E a mensagem gravada tem o id e o contato do recibo, o conteúdo, o metadata e o message_id enviados

  @OS-005 @AC-01
  Esquema do Cenário: "alembic upgrade head" cria crm_messages com a chave estrangeira para crm_contacts (<banco>)
    Dado um banco <banco> vazio
    Quando eu aplico "alembic upgrade head"
    Então o banco tem as tabelas "crm_messages"
    E o banco tem a chave estrangeira "crm_messages.contact_id -> crm_contacts.id"
    E a coluna "crm_messages.metadata" tem o tipo "<tipo>" no catálogo

    Exemplos:
      | banco      | tipo  |
      | SQLite     | json  |
      | PostgreSQL | jsonb |

  @OS-005 @AC-01
  Esquema do Cenário: Com mensagens já gravadas, a próxima mensagem e a reentrega de uma anterior: cada uma numa linha só, com o seu conteúdo, no contato do seu remetente (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "ingest"
    E que o WhatsApp entregou a mensagem "primeira" de "5511987654321" com o id "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEkFDMDEtMQ"
    E que o WhatsApp entregou a mensagem "de outra pessoa" de "5521988887777" com o id "wamid.HBgNNTUyMTk4ODg4Nzc3NxUCABEYEkFDMDEtOQ"
    Quando o WhatsApp entrega a mensagem "segunda" de "5511987654321" com o id "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEkFDMDEtMg"
    Então a resposta tem o status 202
    Quando o WhatsApp reentrega a mensagem "primeira" de "5511987654321" com o id "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEkFDMDEtMQ"
    Então a resposta tem o status 200
    E a resposta traz o recibo da mensagem "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEkFDMDEtMQ" entregue antes
    E crm_messages guarda exatamente estas mensagens, cada uma no contato do seu remetente:
      | message_id                                         | conteúdo        | remetente     |
      | wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEkFDMDEtMQ       | primeira        | 5511987654321 |
      | wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEkFDMDEtMg       | segunda         | 5511987654321 |
      | wamid.HBgNNTUyMTk4ODg4Nzc3NxUCABEYEkFDMDEtOQ       | de outra pessoa | 5521988887777 |
    E a tabela "crm_contacts" do app tem 2 linha(s)

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-005 @AC-02
  Cenário: Um celular brasileiro nas formas de 12 e de 13 dígitos é um só contato
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "ingest"
    Quando eu envio ao "/ingest/message" uma mensagem do WhatsApp de "551199999999"
    E eu envio ao "/ingest/message" uma mensagem do WhatsApp de "5511999999999"
    Então as respostas tiveram os status "202, 202"
    E as respostas trazem o mesmo contact_id
    E a tabela "crm_contacts" do app tem 1 linha(s)
    E a tabela "crm_messages" do app tem 2 linha(s)

  @OS-005 @AC-02
  Esquema do Cenário: O remetente do WhatsApp "<enviado>" é guardado como "<canônico>" (<caso>)
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "ingest"
    Quando eu envio ao "/ingest/message" uma mensagem do WhatsApp de "<enviado>"
    Então a resposta tem o status 202
    E o contato gravado tem o remetente "<canônico>"

    Exemplos:
      | caso                          | enviado             | canônico      |
      | celular com nono dígito       | 5511999999999       | 5511999999999 |
      | celular sem nono dígito       | 558187654321        | 5581987654321 |
      | com +, espaços e parênteses   | +55 (11) 99999-9999 | 5511999999999 |
      | fixo nunca ganha nono dígito  | 551133334444        | 551133334444  |
      | número de outro país          | 14155552671         | 14155552671   |

  @OS-005 @AC-03
  Cenário: O exemplo WhatsApp enviado duas vezes com o mesmo message_id vira uma linha
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "ingest"
    Quando eu envio 2 vezes ao "/ingest/message" o corpo:
      """json
      {"source": "whatsapp", "sender_id": "5511999999999", "content": "teste", "metadata": {"message_id": "wamid.1"}}
      """
    Então as respostas tiveram os status "202, 200"
    E as respostas trazem o mesmo recibo
    E a tabela "crm_messages" do app tem 1 linha(s)

  @OS-005 @AC-03
  Cenário: A mesma Idempotency-Key: repetida dá 200 com o recibo original, com outro corpo dá 422
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "ingest"
    Quando eu envio ao "/ingest/message" com a Idempotency-Key "pedido-42" o corpo:
      """json
      {"source": "whatsapp", "sender_id": "5511999999999", "content": "teste"}
      """
    E eu envio ao "/ingest/message" com a Idempotency-Key "pedido-42" o corpo:
      """json
      {"source": "whatsapp", "sender_id": "5511999999999", "content": "teste"}
      """
    E eu envio ao "/ingest/message" com a Idempotency-Key "pedido-42" o corpo:
      """json
      {"source": "whatsapp", "sender_id": "5511999999999", "content": "outro texto"}
      """
    Então as respostas tiveram os status "202, 200, 422"
    E as respostas 1 e 2 trazem o mesmo recibo
    E a resposta é um problem+json com o status 422
    E a tabela "crm_messages" do app tem 1 linha(s)

  @OS-005 @AC-03
  Cenário: Uma Idempotency-Key cuja primeira requisição ainda roda dá 409
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "ingest"
    E que uma requisição com a Idempotency-Key "pedido-7" e o exemplo WhatsApp ainda está em andamento
    Quando eu envio ao "/ingest/message" com a Idempotency-Key "pedido-7" o exemplo WhatsApp
    Então a resposta tem o status 409
    E a resposta é um problem+json com o status 409
    E a tabela "crm_messages" do app tem 0 linha(s)

  @OS-005 @AC-03
  Esquema do Cenário: 50 requisições paralelas idênticas gravam exatamente uma linha (<banco>)
    Dado um banco <banco> vazio
    Quando eu aplico "alembic upgrade head"
    Então o banco tem a restrição de unicidade "crm_messages (source, channel_message_id)"
    E o banco tem a restrição de unicidade "crm_idempotency_keys (principal, key)"
    E 50 requisições HTTP paralelas idênticas com o mesmo message_id gravam exatamente 1 mensagem
    E 50 requisições HTTP paralelas idênticas com a mesma Idempotency-Key gravam exatamente 1 mensagem
    E 50 transações paralelas com a mesma mensagem gravam exatamente 1 mensagem

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-005 @AC-04
  Cenário: Um lote responde item a item e grava os aceitos
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "ingest"
    Quando eu envio ao "/ingest/messages" o corpo:
      """json
      {"messages": [
        {"source": "whatsapp", "sender_id": "5511999999999", "content": "a", "metadata": {"message_id": "wamid.a"}},
        {"source": "whatsapp", "sender_id": "5511999999999", "content": "a", "metadata": {"message_id": "wamid.a"}},
        {"source": "whatsapp", "sender_id": "não é número", "content": "b"},
        {"source": "instagram", "sender_id": "ana.silva", "content": "c"}
      ]}
      """
    Então a resposta tem o status 200
    E os resultados por item são "accepted, duplicate, rejected, accepted"
    E o item 3 rejeitado traz um problem+json que aponta "#/messages/2/sender_id"
    E a tabela "crm_messages" do app tem 2 linha(s)

  @OS-005 @AC-04
  Esquema do Cenário: Um lote de <quantidade> mensagens dá <status>
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "ingest"
    Quando eu envio ao "/ingest/messages" um lote de <quantidade> mensagens distintas
    Então a resposta tem o status <status>
    E a tabela "crm_messages" do app tem <gravadas> linha(s)

    Exemplos:
      | quantidade | status | gravadas |
      | 1000       | 200    | 1000     |
      | 1001       | 422    | 0        |

  @OS-005 @AC-05
  Cenário: Uma chave criada pela CLI dá acesso; revogada pela CLI, dá 401
    Dado o app do crm_core com o banco migrado
    Quando eu crio uma chave de API de escopo "ingest" com "crm-core keys create"
    E eu envio ao "/ingest/message" o exemplo WhatsApp
    Então a resposta tem o status 202
    E a tabela "crm_api_keys" guarda só o hash SHA-256 da chave
    Quando eu revogo a chave com "crm-core keys revoke"
    E eu envio ao "/ingest/message" o exemplo WhatsApp
    Então a resposta tem o status 401
    E a resposta é um problem+json com o status 401

  @OS-005 @AC-05
  Esquema do Cenário: Sem chave válida é 401; uma chave de ingest na API é 403 (<caso>)
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "ingest"
    Quando eu faço "<rota>" com a autorização "<autorização>"
    Então a resposta tem o status <status>
    E a resposta é um problem+json com o status <status>

    Exemplos:
      | caso                   | rota                 | autorização                                                 | status |
      | sem chave              | POST /ingest/message | nenhuma                                                     | 401    |
      | chave desconhecida     | POST /ingest/message | Bearer crm_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA | 401    |
      | outro esquema          | POST /ingest/message | Basic dXNlcjpzZW5oYQ==                                      | 401    |
      | chave de ingest na API | GET /contacts        | a chave do cenário                                          | 403    |

  @OS-005 @AC-06
  Esquema do Cenário: Com segredo para a origem, a assinatura <assinatura> dá <status>
    Dado o app do crm_core com o banco migrado e o segredo "s3gr3do" para a origem "whatsapp"
    E uma chave de API de escopo "ingest"
    Quando eu envio ao "/ingest/message" o exemplo WhatsApp com a assinatura <assinatura>
    Então a resposta tem o status <status>
    E a tabela "crm_messages" do app tem <gravadas> linha(s)

    Exemplos:
      | assinatura | status | gravadas |
      | correta    | 202    | 1        |
      | ausente    | 401    | 0        |
      | errada     | 401    | 0        |

  @OS-005 @AC-07
  Esquema do Cenário: Um corpo fora dos limites é um 4xx claro e nada é gravado (<caso>)
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "ingest"
    Quando eu envio ao ingest um corpo com <caso>
    Então a resposta tem o status <status>
    E a resposta é um problem+json com o status <status>
    E a tabela "crm_messages" do app tem 0 linha(s)

    Exemplos:
      | caso                         | status |
      | NUL no conteúdo              | 422    |
      | UTF-8 inválido               | 400    |
      | metadata com 9 níveis        | 422    |
      | metadata acima de 16 KiB     | 422    |
      | corpo acima de 1 MiB         | 413    |
      | lote de 1001 mensagens       | 422    |

  @OS-005 @AC-08
  Esquema do Cenário: O pipeline <pipeline> é dado: etapas em ordem e transições permitidas
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "readwrite"
    Quando eu faço "GET /pipelines"
    Então a resposta tem o status 200
    E o pipeline "<pipeline>" tem as etapas "<etapas>" nessa ordem
    E no pipeline "<pipeline>" a etapa "<de>" só pode ir para "<para>"

    Exemplos:
      | pipeline | etapas                                                                                        | de        | para                         |
      | rodobens | novo, qualificacao, simulacao, proposta, analise_credito, contrato, ganho, perdido           | simulacao | proposta, qualificacao, perdido |
      | juridico | triagem, consulta, proposta_honorarios, contratado, ajuizado, em_andamento, encerrado, nao_contratado | contratado | ajuizado, encerrado |

  @OS-005 @AC-09
  Cenário: Contatos paginados por cursor, filtrados por origem e remetente, com as mensagens
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou mensagens de "5511987654321, 5511922222222, 5511933333333, 5511944444444, 5511955555555"
    E que o WhatsApp entregou a mensagem "segunda" de "551187654321"
    Então percorrer "GET /contacts" com limit 2 traz os 5 contatos, sem repetir nenhum
    Quando eu faço "GET /contacts?source=whatsapp&sender_id=551187654321"
    Então a resposta lista 1 item(ns)
    Quando eu faço "GET /contacts/{contact_id}"
    Então a resposta tem o status 200
    E as mensagens recentes do contato são "segunda, oi"
    Quando eu faço "GET /contacts/{contact_id}/messages?limit=1"
    Então a resposta lista 1 item(ns)
    E a resposta tem um next_cursor

  @OS-005 @AC-10
  Cenário: Um negócio é criado, lido, listado e só se move pelas transições permitidas, com histórico
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou mensagens de "5511999999999"
    Quando eu faço "POST /deals" com o corpo:
      """json
      {"contact_id": "{contact_id}", "title": "Consórcio Honda CG 160", "pipeline": "rodobens", "amount": "18500.00"}
      """
    Então a resposta tem o status 201
    E o negócio está na etapa "novo"
    Quando eu faço "POST /deals/{deal_id}/stage" com o corpo:
      """json
      {"stage": "contrato"}
      """
    Então a resposta tem o status 409
    E a resposta é um problem+json com o status 409
    Quando eu faço "POST /deals/{deal_id}/stage" com o corpo:
      """json
      {"stage": "qualificacao"}
      """
    Então a resposta tem o status 200
    Quando eu faço "GET /deals/{deal_id}"
    Então o negócio está na etapa "qualificacao"
    E o histórico do negócio é "novo, qualificacao"
    Quando eu faço "GET /deals?pipeline=rodobens&stage=qualificacao&contact_id={contact_id}"
    Então a resposta lista 1 item(ns)
    Quando eu faço "GET /deals?pipeline=juridico"
    Então a resposta lista 0 item(ns)

  @OS-005 @AC-11
  Cenário: A exportação traz tudo e o apagamento remove os dados pessoais; ambos auditados com a chave
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou a mensagem "meu CPF é 123.456.789-00" de "5511999999999"
    E que o contato tem um negócio "rodobens" de "85000.00"
    Quando eu faço "GET /contacts/{contact_id}/export"
    Então a resposta tem o status 200
    E a exportação traz o contato, a mensagem "meu CPF é 123.456.789-00" e o negócio com o histórico
    Quando eu faço "DELETE /contacts/{contact_id}"
    Então a resposta tem o status 200
    E o contato gravado não tem mais nome, remetente nem conteúdo de mensagem
    E o negócio gravado mantém o valor "85000.00" e a etapa "novo"
    E o log de auditoria registra "contact.export, contact.erase" do contato com a chave do cenário

  @OS-005 @AC-12
  Esquema do Cenário: Todo erro da API é problem+json (<caso>)
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "readwrite"
    Quando eu faço "<rota>"
    Então a resposta tem o status <status>
    E a resposta é um problem+json com o status <status>

    Exemplos:
      | caso               | rota                                               | status |
      | id malformado      | GET /contacts/nao-e-uuid                           | 422    |
      | contato inexistente| GET /contacts/00000000-0000-4000-8000-000000000000 | 404    |
      | negócio inexistente| GET /deals/00000000-0000-4000-8000-000000000000    | 404    |
      | cursor inválido    | GET /contacts?cursor=xyz                           | 400    |
      | limite fora da faixa | GET /deals?limit=0                               | 422    |
      | rota inexistente   | GET /nada                                          | 404    |

  @OS-005 @AC-12
  Esquema do Cenário: As novas revisões sobem, coincidem com os models e descem (<banco>)
    Dado um banco <banco> vazio
    Quando eu aplico "alembic upgrade head"
    Então o banco tem as tabelas "crm_messages, crm_idempotency_keys, crm_api_keys, crm_deal_stage_changes, crm_audit_log"
    E o esquema do banco coincide com o dos models
    Quando eu aplico "alembic downgrade base"
    Então o banco não tem as tabelas "crm_messages, crm_idempotency_keys, crm_api_keys, crm_deal_stage_changes, crm_audit_log"

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |
