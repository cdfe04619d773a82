# language: pt
Funcionalidade: OS 005 — A primeira hora do operador: valores, etapas, corpos e linha de comando
  Ordem de Serviço OS-CODEX-AURORA-CRM-INGEST-20260110-005, critérios AC-20 a AC-24.
  O que quem instala e opera o crm_core encontra primeiro: um valor que a API mostra sempre do
  mesmo jeito, etapas que dizem a verdade sobre si, um corpo que o servidor não sabe ler
  recusado com o status certo, e uma linha de comando que responde a um engano com uma linha.
  Os cenários com banco rodam no SQLite e no PostgreSQL vivos (um banco descartável por
  cenário); sem servidor PostgreSQL o exemplo dele é pulado, e com AURORA_REQUIRE_POSTGRES falha.

  @OS-005 @AC-20
  Esquema do Cenário: Um valor enviado como 1234.5 é "1234.50" em toda resposta que o mostra (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou a mensagem "quero um consórcio" de "5511987650001" com o id "wamid.HBgNNTUxMTk4NzY1MDAwMRUCABEYEkFDMjAtMQ"
    Quando eu faço "POST /deals" com o corpo:
      """json
      {"contact_id": "{contact_id}", "title": "Consórcio", "pipeline": "rodobens", "amount": 1234.5}
      """
    Então a resposta tem o status 201
    E o valor do negócio é "1234.50" na resposta e em cada leitura dele: "GET /deals/{deal_id}", "GET /deals", a mudança para a etapa "qualificacao" e a exportação do contato

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-005 @AC-20
  Cenário: Cada etapa diz se o negócio terminou ali e se ainda pode sair dela
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "readwrite"
    Quando eu faço "GET /pipelines"
    Então a resposta tem o status 200
    E toda etapa sem próximas etapas é "terminal", e só ela
    E as etapas encerradas ("closed") são "rodobens.ganho, rodobens.perdido, juridico.encerrado, juridico.nao_contratado"

  @OS-005 @AC-21
  Esquema do Cenário: Um corpo com Content-Encoding "<codificação>" em "<rota>" recebe 415, que diz o que o servidor aceita, e nada é gravado
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "readwrite"
    Quando eu envio a "<rota>" o exemplo WhatsApp com Content-Encoding "<codificação>"
    Então a resposta tem o status 415
    E a resposta é um problem+json com o status 415
    E a resposta tem o cabeçalho "Accept-Encoding" com o valor "identity"
    E a tabela "crm_messages" do app tem 0 linha(s)
    E a tabela "crm_contacts" do app tem 0 linha(s)

    Exemplos:
      | rota             | codificação |
      | /ingest/message  | gzip        |
      | /ingest/messages | deflate     |
      | /deals           | br          |

  @OS-005 @AC-22
  Esquema do Cenário: O engano "crm-core <comando>" é uma linha de erro e o código 2, sem traceback
    Quando eu rodo "crm-core <comando>"
    Então o comando termina com o código 2
    E a saída de erro é uma linha só, que cita "<cita>", sem traceback

    Exemplos:
      | comando                  | cita       |
      | serve --workers 0        | workers    |
      | serve --port 99999       | port       |
      | serve --log-level bogus  | log-level  |
      | serve --port oitenta     | port       |
      | keys revoke não-é-um-id  | key id     |
      | keys create --scope root | scope      |
      | chaves                   | chaves     |

  @OS-005 @AC-22
  Esquema do Cenário: "crm-core serve" diz onde escuta e em que banco, sem a senha (<banco>)
    Dado a URL de um banco <banco> vivo, com a senha "senha-do-cenario" quando o banco tem senha
    Quando eu inicio "crm-core serve --workers 2" nesse banco
    Então cada um dos 2 workers registra uma linha com o endereço em que escuta, o número de workers e o banco
    E nenhuma linha do servidor mostra "senha-do-cenario"

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-005 @AC-23
  Esquema do Cenário: "<enviado>" no WhatsApp é a mesma pessoa que "5521987650001" (<forma>, <banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "ingest"
    E que o WhatsApp entregou a mensagem "primeira" de "5521987650001" com o id "wamid.HBgNNTUyMTk4NzY1MDAwMRUCABEYEkFDMjMtMA"
    Quando o WhatsApp entrega a mensagem "na outra forma" de "<enviado>" com o id "<id>"
    Então a resposta tem o status 202
    E a tabela "crm_contacts" do app tem 1 linha(s)
    E o contato gravado tem o remetente "5521987650001"

    Exemplos:
      | enviado                         | forma                                    | id                                           | banco      |
      | (21) 98765-0001                 | forma nacional, região padrão BR         | wamid.HBgNNTUyMTk4NzY1MDAwMRUCABEYEkFDMjMtMQ | SQLite     |
      | (21) 98765-0001                 | forma nacional, região padrão BR         | wamid.HBgNNTUyMTk4NzY1MDAwMRUCABEYEkFDMjMtMQ | PostgreSQL |
      | +55 21 98765-0001               | internacional com +                      | wamid.HBgNNTUyMTk4NzY1MDAwMRUCABEYEkFDMjMtMg | SQLite     |
      | 5521987650001@s.whatsapp.net    | JID                                      | wamid.HBgNNTUyMTk4NzY1MDAwMRUCABEYEkFDMjMtMw | SQLite     |
      | 5521987650001@s.whatsapp.net    | JID                                      | wamid.HBgNNTUyMTk4NzY1MDAwMRUCABEYEkFDMjMtMw | PostgreSQL |
      | 5521987650001:12@s.whatsapp.net | JID com sufixo de dispositivo            | wamid.HBgNNTUyMTk4NzY1MDAwMRUCABEYEkFDMjMtNA | SQLite     |
      | 5521987650001@c.us              | JID de gateway                           | wamid.HBgNNTUyMTk4NzY1MDAwMRUCABEYEkFDMjMtNQ | SQLite     |
      | 552187650001                    | número possível, não válido: 12 dígitos  | wamid.HBgNNTUyMTk4NzY1MDAwMRUCABEYEkFDMjMtNg | SQLite     |
      | 552187650001                    | número possível, não válido: 12 dígitos  | wamid.HBgNNTUyMTk4NzY1MDAwMRUCABEYEkFDMjMtNg | PostgreSQL |

  @OS-005 @AC-23
  Esquema do Cenário: "<enviado>" não é o número de uma pessoa: 422, e nada é gravado (<motivo>)
    Dado o app do crm_core com o banco migrado
    E uma chave de API de escopo "ingest"
    Quando eu envio ao "/ingest/message" uma mensagem do WhatsApp de "<enviado>"
    Então a resposta tem o status 422
    E a resposta é um problem+json com o status 422
    E a tabela "crm_messages" do app tem 0 linha(s)
    E a tabela "crm_contacts" do app tem 0 linha(s)

    Exemplos:
      | enviado                   | motivo                              |
      | 120363012345678901@g.us   | um grupo não é uma pessoa           |
      | 1-800-FLOWERS             | letras                              |
      | 98765-0001                | número local sem o código de área   |
      | 5521987650001234567       | mais de 15 dígitos                  |

  @OS-005 @AC-21
  Esquema do Cenário: Um corpo de 10 MB acima do limite recebe o 413 problem+json, e nada é gravado (<cliente>)
    Dado o crm_core servido de verdade num banco migrado, com o limite de corpo padrão
    Quando um cliente <cliente> envia a "/ingest/message" uma mensagem de 10 MB
    Então o cliente lê a resposta 413 em problem+json, que cita o limite
    E o servidor não gravou nenhum contato

    Exemplos:
      | cliente                                                  |
      | que escreve o corpo inteiro antes de ler (urllib)        |
      | que escreve o corpo inteiro em chunks antes de ler       |

  @OS-005 @AC-24
  Esquema do Cenário: "<página>" vem do próprio pacote: nenhum arquivo de outro endereço
    Dado o app do crm_core com o banco migrado
    Quando eu abro "<página>" sem chave
    Então a página carrega só arquivos que o próprio servidor serve, e a política de conteúdo só permite a própria origem

    Exemplos:
      | página |
      | /docs  |
      | /redoc |

  @OS-005 @AC-24
  Cenário: O documento OpenAPI declara a chave de API como segurança bearer exatamente nas operações que a exigem
    Dado o app do crm_core com o banco migrado
    Quando eu leio "/openapi.json" sem chave
    Então o documento declara um esquema de segurança HTTP bearer
    E cada operação declara a chave exatamente quando recusa com 401 quem chega sem ela
