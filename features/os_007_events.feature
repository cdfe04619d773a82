# language: pt
Funcionalidade: OS 007 — O feed de eventos: outbox transacional, GET /events e o relay para o NATS JetStream
  Ordem de Serviço OS-CODEX-AURORA-CRM-EVENTOS-20261201-007.
  Os Critérios de Aceite AC-01 a AC-11 são provados pelos cenários marcados com o seu ID; o
  AC-12 (Gates PASS) é provado pelo resultado dos gates, e nenhum cenário o marca.
  Cada cenário roda no SQLite e no PostgreSQL vivos (um banco descartável por cenário): sem um
  servidor PostgreSQL configurado, o exemplo do PostgreSQL é pulado (e não prova nada); com
  AURORA_REQUIRE_POSTGRES, falha. Os cenários do relay sobem um nats-server descartável numa
  porta própria: sem o nats-server, são pulados; com AURORA_REQUIRE_NATS, falham. Os tipos dos
  eventos são escritos sem o prefixo "br.aurora.crm.".

  @OS-007 @AC-01
  Esquema do Cenário: Cada mudança grava o seu evento, uma vez, e o que não muda nada não grava (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou a mensagem "quero um carro" de "5521987650001" com o id "wamid.E1"
    E que o contato tem um negócio "rodobens" de "150000.00"
    Quando o WhatsApp reentrega a mensagem "quero um carro" de "5521987650001" com o id "wamid.E1"
    E o WhatsApp entrega a mensagem "outro texto" de "5521987650001" com o id "wamid.E1"
    Então a resposta é um problem+json com o status 409
    Quando eu faço "POST /deals/{deal_id}/stage" com o corpo:
      """
      {"stage": "qualificacao"}
      """
    Então a resposta tem o status 200
    E o feed traz os eventos "contact.created, message.received, deal.created, deal.stage_changed", nessa ordem
    E a tabela "crm_events" do app tem 4 linha(s)

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-007 @AC-01
  Esquema do Cenário: As entregas da Meta gravam os eventos de mensagens, status, reações, edições e revogações, uma vez (<banco>)
    Dado o app do crm_core no banco <banco> migrado com o webhook do WhatsApp configurado
    E uma chave de API de escopo "read"
    Quando a Meta entrega o exemplo "every_type" assinado
    E a Meta entrega o exemplo "events" assinado
    E a Meta entrega o exemplo "statuses" assinado
    E a Meta entrega o exemplo "statuses" assinado
    Então o feed traz, por tipo, os eventos "contact.created=2, message.received=14, message.reaction=1, message.edited=1, message.revoked=1, message.status=4"
    E cada evento de status, reação, edição ou revogação nomeia a mensagem e o contato quando a mensagem é do crm_core

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-007 @AC-01
  Esquema do Cenário: Com CRM_OUTBOX=false as mudanças continuam e nenhum evento é gravado (<banco>)
    Dado o app do crm_core no banco <banco> migrado com o outbox desligado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou a mensagem "sem eventos" de "5521987650001" com o id "wamid.S1"
    E que o contato tem um negócio "juridico" de "900.00"
    Então a tabela "crm_messages" do app tem 1 linha(s)
    E a tabela "crm_deals" do app tem 1 linha(s)
    E a tabela "crm_events" do app tem 0 linha(s)

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-007 @AC-02
  Esquema do Cenário: Cada evento é um CloudEvent 1.0 e o dado da mensagem é o da API (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou a mensagem "bom dia" de "(21) 98765-0001" com o id "wamid.C1"
    E que o contato tem um negócio "rodobens" de "80000.00"
    Então cada evento do feed é um CloudEvent 1.0 que o SDK lê, de origem "/aurora-crm/crm-core", com um tipo documentado, id único e hora em UTC
    E o evento "message.received" traz a mensagem exatamente como "GET /messages/{id}" a mostra
    E o evento "contact.created" traz o id, a origem "whatsapp", o remetente "5521987650001" e a criação do contato
    E o evento "deal.created" traz o negócio como "GET /deals/{id}" o mostra, sem o histórico

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-007 @AC-03
  Esquema do Cenário: O feed pagina, filtra por tipo e recusa o que não entende (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou mensagens de "5521987650001, 5521987650002, 5521987650003"
    Quando eu faço "GET /events?types=br.aurora.crm.contact.created&limit=2"
    Então a resposta lista 2 item(ns)
    E a resposta tem um next_cursor
    E percorrer o feed com limit 2 e "types=br.aurora.crm.message.received" traz 3 eventos "message.received", sem repetir nenhum
    Quando eu faço "GET /events?types=br.aurora.crm.contact.criado"
    Então a resposta é um problem+json com o status 400
    Quando eu faço "GET /events?after=nao-e-um-cursor"
    Então a resposta é um problem+json com o status 400
    Quando eu faço "GET /events?wait=31"
    Então a resposta é um problem+json com o status 422
    Quando eu faço "GET /events?limit=1001"
    Então a resposta é um problem+json com o status 422

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-007 @AC-03
  Esquema do Cenário: O feed pede uma chave de leitura, e a chave de leitura não muda nada (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "read"
    Então "GET /events" com a chave do cenário responde 200, sem chave 401 e com uma chave "ingest" 403
    E com a chave do cenário "GET /contacts" e "GET /deals" respondem 200, e "POST /deals" e "POST /ingest/message" respondem 403

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-007 @AC-04
  Esquema do Cenário: A espera longa responde quando um evento confirma, e vazia no prazo (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou a mensagem "primeira" de "5521987650001" com o id "wamid.W1"
    Então um pedido a partir do fim do feed com wait de 10 segundos, enquanto a mensagem "segunda" de "5521987650001" é gravada 1 segundo depois, responde antes do prazo com o evento dela
    E um pedido a partir do fim do feed com wait de 1 segundo, sem evento novo, responde vazio depois do prazo com o mesmo end_cursor

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-007 @AC-05
  Esquema do Cenário: O evento de uma transação que confirma tarde não é pulado (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou mensagens de "5521987650001, 5521987650002"
    Quando uma mensagem é gravada por uma transação que fica aberta enquanto outras 3 mensagens são gravadas pela API
    E eu sigo o feed até o fim
    E a transação aberta da mensagem faz commit
    E eu sigo o feed de novo a partir do end_cursor
    Então eu vi cada evento do banco exatamente uma vez, na ordem do feed

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-007 @AC-05
  Esquema do Cenário: Um consumidor que segue o feed enquanto 16 clientes gravam vê cada evento uma vez, na ordem de commit (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    Então com "crm-core serve" no mesmo banco e 16 clientes que gravam por 4 segundos, um consumidor que segue "GET /events" com wait vê cada evento exatamente uma vez, na ordem de commit, o evento de cada mensagem aceita e cada contato criado antes da sua primeira mensagem

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-007 @AC-06
  Esquema do Cenário: Depois da eliminação, nenhum evento do feed guarda dado da pessoa (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou a mensagem "meu CPF é 123.456.789-09" de "5521987650001" com o id "wamid.L1"
    E que o contato tem um negócio "juridico" de "5000.00"
    Quando eu faço "DELETE /contacts/{contact_id}"
    Então a resposta tem o status 200
    E nenhum evento do feed guarda "123.456.789-09, 5521987650001, 21987650001, wamid.L1, Negócio do cenário"
    E o feed traz os eventos "contact.created, message.received, deal.created, contact.erased", nessa ordem
    E os eventos do contato eliminado trazem só o id do contato e "erased", e o evento "contact.erased" nomeia o contato

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-007 @AC-07
  Esquema do Cenário: O relay publica cada evento no JetStream, na ordem, uma vez, e nada apagado (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    E um nats-server descartável com JetStream
    E que o WhatsApp entregou mensagens de "5521987650001, 5521987650002"
    E que o contato tem um negócio "rodobens" de "1000.00"
    Quando o relay publica até não haver evento novo
    Então o stream tem os eventos do feed, na mesma ordem, cada um no assunto do seu tipo, com o Nats-Msg-Id igual ao id do evento e o CloudEvent igual ao do feed
    E a posição do relay é o último evento do feed
    Quando a posição do relay se perde e o relay publica de novo até não haver evento novo
    Então o relay não publicou nada de novo e o stream guarda cada evento uma vez
    Dado que o WhatsApp entregou a mensagem "moro na Rua das Flores, 12" de "5521987650003" com o id "wamid.R3"
    Quando eu faço "DELETE /contacts/{contact_id}"
    E o relay publica até não haver evento novo
    Então nenhuma mensagem do stream guarda "Rua das Flores, 5521987650003, wamid.R3"
    E o stream tem os eventos do feed, na mesma ordem, cada um no assunto do seu tipo, com o Nats-Msg-Id igual ao id do evento e o CloudEvent igual ao do feed

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-007 @AC-08
  Esquema do Cenário: O relay morto com SIGKILL e o NATS reiniciado no meio de uma carga não perdem nem repetem evento (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    E um nats-server descartável com JetStream
    Então com "crm-core relay" rodando enquanto clientes gravam, o relay morto com SIGKILL e reiniciado deixa no stream cada evento exatamente uma vez, na ordem
    E com o nats-server parado e religado enquanto clientes gravam, a ingestão responde sempre 2xx e o stream termina com cada evento exatamente uma vez, na ordem

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-007 @AC-09
  Esquema do Cenário: A poda apaga os eventos velhos, nunca um que o relay ainda não publicou (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou mensagens de "5521987650001, 5521987650002"
    E que os 4 eventos do banco têm 40 dias e mais um evento é de hoje
    Quando eu rodo "crm-core events prune" com CRM_NATS_URL configurado
    Então a saída é "pruned 0 event(s) older than 30 day(s); kept 4 the relay has not published yet"
    E a tabela "crm_events" do app tem 5 linha(s)
    Quando o relay registrou a posição do 2º evento do feed
    E eu rodo "crm-core events prune" com CRM_NATS_URL configurado
    Então a saída é "pruned 2 event(s) older than 30 day(s); kept 2 the relay has not published yet"
    E o feed começa pelo 3º dos eventos de antes
    Quando eu rodo "crm-core events prune --older-than-days 50" sem CRM_NATS_URL
    Então a saída é "pruned 0 event(s) older than 50 day(s)"
    E a tabela "crm_events" do app tem 3 linha(s)

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-007 @AC-10
  Esquema do Cenário: "crm-core events tail" imprime cada evento numa linha JSON e recusa uma chave errada numa linha (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    Então com "crm-core serve" no mesmo banco e 3 mensagens gravadas, "crm-core events tail --once" imprime os 6 eventos do feed, um JSON por linha, na ordem, e diz de que cursor retomar
    E com "--types br.aurora.crm.contact.created" imprime só os 3 contatos, e com uma chave errada escreve uma linha de erro e sai com o código 1

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-007 @AC-11
  Esquema do Cenário: A nova revisão cria o outbox e aceita chaves de leitura, coincide com os models e desce (<banco>)
    Dado um banco <banco> vazio
    Quando eu aplico "alembic upgrade head"
    Então o banco tem as tabelas "crm_events, crm_relay_positions"
    E o esquema do banco coincide com o dos models
    E o banco aceita uma chave de API de escopo "read" e recusa uma de escopo "admin"
    Quando eu aplico "alembic downgrade 0007"
    Então o banco não tem as tabelas "crm_events, crm_relay_positions"
    E o banco recusa uma chave de API de escopo "read"
    E o banco aceita uma chave de API de escopo "readwrite" e recusa uma de escopo "read"

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |
