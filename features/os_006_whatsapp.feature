# language: pt
Funcionalidade: OS 006 — A porta do WhatsApp Cloud API: os webhooks da Meta direto no crm_core
  Ordem de Serviço OS-CODEX-AURORA-CRM-WHATSAPP-20261130-006.
  Os Critérios de Aceite AC-01 a AC-10 são provados pelos cenários marcados com o seu ID; o
  AC-11 (Gates PASS) é provado pelo resultado dos gates, e nenhum cenário o marca.
  Cada cenário roda no SQLite e no PostgreSQL vivos (um banco descartável por cenário): sem um
  servidor PostgreSQL configurado, o exemplo do PostgreSQL é pulado (e não prova nada); com
  AURORA_REQUIRE_POSTGRES, falha. As entregas são os exemplos de tests/crm_core/fixtures/whatsapp,
  no formato que a Meta documenta, com números e wamids falsos.

  @OS-006 @AC-01
  Esquema do Cenário: A verificação da Meta recebe o desafio só com o token certo (<banco>)
    Dado o app do crm_core no banco <banco> migrado com o webhook do WhatsApp configurado
    Quando a Meta faz a verificação com "hub.mode=subscribe&hub.verify_token=token-de-verificacao&hub.challenge=1158201444"
    Então a resposta é o texto "1158201444" em text/plain
    Quando a Meta faz a verificação com "hub.mode=subscribe&hub.verify_token=token-errado&hub.challenge=1158201444"
    Então a resposta tem o status 403
    E a resposta é um problem+json com o status 403
    Quando a Meta faz a verificação com "hub.mode=unsubscribe&hub.verify_token=token-de-verificacao&hub.challenge=1158201444"
    Então a resposta é um problem+json com o status 403

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-006 @AC-01
  Esquema do Cenário: Sem o token e o segredo configurados, o webhook responde 404 e não grava nada (<banco>)
    Dado o app do crm_core no banco <banco> migrado
    Quando a Meta faz a verificação com "hub.mode=subscribe&hub.verify_token=token-de-verificacao&hub.challenge=1158201444"
    Então a resposta é um problem+json com o status 404
    Quando a Meta entrega o exemplo "statuses" assinado
    Então a resposta é um problem+json com o status 404
    E a tabela "crm_message_statuses" do app tem 0 linha(s)

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-006 @AC-02
  Esquema do Cenário: Uma entrega sem assinatura ou com assinatura errada dá 401 e nada é gravado (<banco>)
    Dado o app do crm_core no banco <banco> migrado com o webhook do WhatsApp configurado
    Quando a Meta entrega o exemplo "every_type" sem assinatura
    Então a resposta é um problem+json com o status 401
    Quando a Meta entrega o exemplo "every_type" assinado com outro segredo
    Então a resposta é um problem+json com o status 401
    Quando a Meta entrega o exemplo "every_type" com a assinatura "sha1=0000"
    Então a resposta é um problem+json com o status 401
    E a tabela "crm_messages" do app tem 0 linha(s)
    E a tabela "crm_contacts" do app tem 0 linha(s)
    Quando a Meta entrega o exemplo "every_type" assinado
    Então a resposta tem o status 200
    E a tabela "crm_messages" do app tem 14 linha(s)

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-006 @AC-02
  Cenário: A assinatura é a autenticação do webhook no documento OpenAPI, sem chave de API
    Dado o app do crm_core com o banco migrado
    Quando eu leio "/openapi.json" sem chave
    Então cada operação declara a chave exatamente quando recusa com 401 quem chega sem ela

  @OS-006 @AC-03
  Esquema do Cenário: Todo tipo de mensagem de uma entrega com várias entradas e mudanças é gravado (<banco>)
    Dado o app do crm_core no banco <banco> migrado com o webhook do WhatsApp configurado
    Quando a Meta entrega o exemplo "every_type" assinado
    Então a resposta diz 14 em "messages"
    E crm_messages guarda exatamente estas mensagens do WhatsApp:
      | wamid                           | contato       | conteúdo                                                     |
      | wamid.TEST.text.0001            | 5521987650001 | Olá, quero simular um consórcio de carro                     |
      | wamid.TEST.image.0002           | 5521987650001 | CNH frente                                                   |
      | wamid.TEST.audio.0003           | 5521987650001 | [audio]                                                      |
      | wamid.TEST.video.0004           | 5521987650001 | [video]                                                      |
      | wamid.TEST.document.0005        | 5521987650001 | [document] comprovante-renda.pdf                             |
      | wamid.TEST.sticker.0006         | 5521987650001 | [sticker]                                                    |
      | wamid.TEST.location.0007        | 5521987650001 | [location] Escritório Av. Rio Branco, 1 (-22.9068, -43.1729) |
      | wamid.TEST.contacts.0008        | 5521987650001 | [contacts] Carlos Lima                                       |
      | wamid.TEST.button_reply.0009    | 5521987650001 | Sim, quero simular                                           |
      | wamid.TEST.list_reply.0010      | 5521987650001 | Consórcio                                                    |
      | wamid.TEST.button.0011          | 5511987650002 | Falar com advogado                                           |
      | wamid.TEST.order.0012           | 5511987650002 | [order] 1 item(s)                                            |
      | wamid.TEST.system.0013          | 5511987650002 | Bruno mudou de 5511987650002 para 5511987650003              |
      | wamid.TEST.unsupported.0014     | 5511987650002 | [unsupported]                                                |
    E o metadata da mensagem "wamid.TEST.image.0002" traz:
      | campo                | valor                                              |
      | type                 | "image"                                            |
      | phone_number_id      | "900000000000001"                                  |
      | display_phone_number | "552130000001"                                     |
      | media.id             | "1100000000000002"                                 |
      | media.mime_type      | "image/jpeg"                                       |
      | media.sha256         | "q1V0yGkTQmrbPm0z1Wb4cWzcn4ZUrY6F7x0Y1vHgQ6E="     |
      | media.caption        | "CNH frente"                                       |
    E o metadata da mensagem "wamid.TEST.document.0005" traz:
      | campo          | valor                       |
      | media.filename | "comprovante-renda.pdf"     |
      | media.mime_type| "application/pdf"           |
    E o metadata da mensagem "wamid.TEST.button.0011" traz:
      | campo                | valor                       |
      | phone_number_id      | "900000000000002"           |
      | display_phone_number | "551130000002"              |
      | message.context.id   | "wamid.TEST.outbound.0101"  |
      | message.button.payload | "FALAR_ADVOGADO"          |

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-006 @AC-04
  Esquema do Cenário: O remetente é o mesmo contato do ingest, com o nome do perfil quando não tem nome (<banco>)
    Dado o app do crm_core no banco <banco> migrado com o webhook do WhatsApp configurado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou a mensagem "antes do webhook" de "5521987650001" com o id "wamid.TEST.ingest.0000"
    Quando a Meta entrega o exemplo "every_type" assinado
    Então a tabela "crm_contacts" do app tem 2 linha(s)
    E o contato "5521987650001" tem o nome "Ana Souza"
    E o contato "5511987650002" tem o nome "Bruno Reis"
    Quando a Meta entrega, assinado, o corpo:
      """json
      {"object": "whatsapp_business_account", "entry": [{"id": "800000000000001", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "552130000001", "phone_number_id": "900000000000001"},
        "contacts": [{"profile": {"name": "Outro Nome"}, "wa_id": "5521987650001"}, {"profile": {"name": "Número Novo"}, "wa_id": "99912345"}],
        "messages": [
          {"from": "5521987650001", "id": "wamid.TEST.text.0030", "timestamp": "1764546300", "type": "text", "text": {"body": "sou eu de novo"}},
          {"from": "99912345", "id": "wamid.TEST.text.0031", "timestamp": "1764546301", "type": "text", "text": {"body": "plano de numeração novo"}}
        ]}}]}]}
      """
    Então a resposta diz 2 em "messages"
    E a tabela "crm_contacts" do app tem 3 linha(s)
    E o contato "5521987650001" tem o nome "Ana Souza"
    E o contato "99912345" tem o nome "Número Novo"

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-006 @AC-05
  Esquema do Cenário: Reação, edição e revogação ficam como eventos da mensagem, que não muda (<banco>)
    Dado o app do crm_core no banco <banco> migrado com o webhook do WhatsApp configurado
    E uma chave de API de escopo "readwrite"
    Quando a Meta entrega o exemplo "every_type" assinado
    E a Meta entrega o exemplo "events" assinado
    Então a resposta diz 3 em "events"
    E a resposta diz 0 em "messages"
    Quando a Meta entrega o exemplo "events" assinado
    Então a resposta diz 0 em "events"
    E crm_message_events guarda exatamente:
      | evento                   | mensagem             | tipo     |
      | wamid.TEST.reaction.0020 | wamid.TEST.text.0001 | reaction |
      | wamid.TEST.edit.0021     | wamid.TEST.text.0001 | edit     |
      | wamid.TEST.revoke.0022   | wamid.TEST.text.0001 | revoke   |
    E a tabela "crm_messages" do app tem 14 linha(s)
    Quando eu leio a mensagem "wamid.TEST.text.0001"
    Então a mensagem lida tem o conteúdo "Olá, quero simular um consórcio de carro"
    E os eventos da mensagem lida são "reaction, edit, revoke"

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-006 @AC-06
  Esquema do Cenário: Cada status é gravado uma vez por mensagem, também o de uma mensagem de outro sistema (<banco>)
    Dado o app do crm_core no banco <banco> migrado com o webhook do WhatsApp configurado
    E uma chave de API de escopo "readwrite"
    E que o WhatsApp entregou a mensagem "Sua simulação está pronta" de "5521987650001" com o id "wamid.TEST.outbound.0100"
    Quando a Meta entrega o exemplo "statuses" assinado
    Então a resposta diz 4 em "statuses"
    Quando a Meta entrega o exemplo "statuses" assinado
    Então a resposta diz 0 em "statuses"
    E crm_message_statuses guarda exatamente:
      | wamid                    | status    |
      | wamid.TEST.outbound.0100 | sent      |
      | wamid.TEST.outbound.0100 | delivered |
      | wamid.TEST.outbound.0100 | read      |
      | wamid.TEST.outbound.0999 | failed    |
    E o status "failed" de "wamid.TEST.outbound.0999" traz o erro 131047
    Quando eu leio a mensagem "wamid.TEST.outbound.0100"
    Então os status da mensagem lida são "sent, delivered, read"

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-006 @AC-07
  Esquema do Cenário: A mesma entrega reenviada 3 vezes ao mesmo tempo grava cada coisa uma vez (<banco>)
    Dado o app do crm_core no banco <banco> migrado com o webhook do WhatsApp configurado
    Quando a Meta entrega o exemplo "every_type" assinado 3 vezes ao mesmo tempo
    Então as 3 respostas têm o status 200
    E as respostas somam 14 mensagens gravadas
    E a tabela "crm_messages" do app tem 14 linha(s)
    E a tabela "crm_contacts" do app tem 2 linha(s)
    Quando a Meta entrega o exemplo "statuses" assinado 3 vezes ao mesmo tempo
    E a Meta entrega o exemplo "events" assinado 3 vezes ao mesmo tempo
    Então as 3 respostas têm o status 200
    E a tabela "crm_message_statuses" do app tem 4 linha(s)
    E a tabela "crm_message_events" do app tem 3 linha(s)

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-006 @AC-08
  Esquema do Cenário: Campos novos ficam no metadata, outros campos são ignorados e o que não é entrega dá 422 (<banco>)
    Dado o app do crm_core no banco <banco> migrado com o webhook do WhatsApp configurado
    Quando a Meta entrega, assinado, o corpo:
      """json
      {"object": "whatsapp_business_account", "campo_futuro": 1, "entry": [{"id": "800000000000001", "changes": [
        {"field": "account_update", "value": {"phone_number": "552130000001", "event": "VERIFIED_ACCOUNT"}},
        {"field": "messages", "value": {
          "messaging_product": "whatsapp",
          "metadata": {"display_phone_number": "552130000001", "phone_number_id": "900000000000001"},
          "messages": [{"from": "5521987650001", "id": "wamid.TEST.hologram.0040", "timestamp": "1764546400", "type": "hologram",
                        "hologram": {"frames": 3}, "campo_novo": {"x": 1}},
                       {"from": "5521987650001", "id": "wamid.TEST.nul.0042", "timestamp": "1764546401", "type": "text",
                        "text": {"body": "oi\u0000tudo \ud800bem"}}]}}]}]}
      """
    Então a resposta diz 2 em "messages"
    E crm_messages guarda exatamente estas mensagens do WhatsApp:
      | wamid                     | contato       | conteúdo      |
      | wamid.TEST.hologram.0040  | 5521987650001 | [hologram]    |
      | wamid.TEST.nul.0042       | 5521987650001 | oi�tudo �bem |
    E o metadata da mensagem "wamid.TEST.hologram.0040" traz:
      | campo                   | valor        |
      | type                    | "hologram"   |
      | message.hologram.frames | 3            |
      | message.campo_novo      | {"x": 1}     |
    Quando a Meta entrega, assinado, o corpo:
      """json
      {"object": "page", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {"messages": [{"from": "5521987650001", "id": "wamid.TEST.page.0041", "type": "text", "text": {"body": "não sou do WhatsApp"}}]}}]}]}
      """
    Então a resposta é um problem+json com o status 422
    Quando a Meta entrega, assinado, o corpo:
      """
      isto não é JSON
      """
    Então a resposta é um problem+json com o status 422
    Quando a Meta entrega, assinado, o corpo:
      """json
      [{"object": "whatsapp_business_account"}]
      """
    Então a resposta é um problem+json com o status 422
    E a tabela "crm_messages" do app tem 2 linha(s)
    E a tabela "crm_contacts" do app tem 1 linha(s)

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-006 @AC-09
  Esquema do Cenário: A reentrega da mensagem de uma pessoa eliminada não grava nada e responde 200 (<banco>)
    Dado o app do crm_core no banco <banco> migrado com o webhook do WhatsApp configurado
    E uma chave de API de escopo "readwrite"
    E eu observo o log do webhook
    E que o WhatsApp entregou a mensagem "Sua simulação está pronta" de "5521987650001" com o id "wamid.TEST.outbound.0100"
    Quando a Meta entrega o exemplo "every_type" assinado
    E a Meta entrega o exemplo "events" assinado
    E a Meta entrega, assinado, o corpo:
      """json
      {"object": "whatsapp_business_account", "entry": [{"id": "800000000000001", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "552130000001", "phone_number_id": "900000000000001"},
        "statuses": [{"id": "wamid.TEST.outbound.0100", "status": "delivered", "timestamp": "1764546201", "recipient_id": "5521987650001"},
                     {"id": "wamid.TEST.outbound.0100", "status": "read", "timestamp": "1764546202", "recipient_id": "5521987650001"}]}}]}]}
      """
    Então a tabela "crm_message_events" do app tem 3 linha(s)
    E a tabela "crm_message_statuses" do app tem 2 linha(s)
    Quando eu elimino o contato da mensagem "wamid.TEST.text.0001"
    Então a tabela "crm_message_events" do app tem 0 linha(s)
    E a tabela "crm_message_statuses" do app tem 0 linha(s)
    Quando a Meta entrega o exemplo "every_type" assinado
    Então a resposta diz 10 em "erased_messages"
    E a resposta diz 0 em "messages"
    E a resposta diz 4 em "duplicate_messages"
    E a tabela "crm_messages" do app tem 15 linha(s)
    E a tabela "crm_contacts" do app tem 2 linha(s)
    Quando a Meta entrega o exemplo "events" assinado
    Então a resposta diz 0 em "events"
    Quando a Meta entrega o exemplo "statuses" assinado
    Então crm_message_statuses guarda exatamente:
      | wamid                    | status |
      | wamid.TEST.outbound.0999 | failed |
    E a tabela "crm_message_events" do app tem 0 linha(s)
    E nenhuma linha do banco guarda "quero simular um consórcio de carro, CNH frente, Ana Souza, Sua simulação está pronta, wamid.TEST.text.0001, wamid.TEST.outbound.0100"
    E o log conta 10 mensagens e 6 status ou eventos de dados eliminados não gravados, sem "5521987650001, 552187650001, Ana Souza"

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-006 @AC-10
  Esquema do Cenário: A nova revisão cria as tabelas de status e eventos, coincide com os models e desce (<banco>)
    Dado um banco <banco> vazio
    Quando eu aplico "alembic upgrade head"
    Então o banco tem as tabelas "crm_message_statuses, crm_message_events"
    E o banco tem a restrição de unicidade "crm_message_statuses (wamid, status)"
    E o banco tem a restrição de unicidade "crm_message_events (event_wamid)"
    E o esquema do banco coincide com o dos models
    Quando eu aplico "alembic downgrade 0006"
    Então o banco não tem as tabelas "crm_message_statuses, crm_message_events"
    E o banco tem as tabelas "crm_messages, crm_erasure_tombstones"

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |
