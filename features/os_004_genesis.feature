# language: pt
Funcionalidade: OS 004 — CRM Headless Genesis
  Ordem de Serviço OS-CODEX-AURORA-CRM-HEADLESS-GENESIS-20260103-004.
  Os Critérios de Aceite AC-01 a AC-05 são provados pelos cenários marcados com o seu ID;
  o AC-06 (Gates PASS) é provado pelo resultado dos gates, e nenhum cenário o marca.
  Cada cenário por banco roda no SQLite e no PostgreSQL: ao vivo quando há um servidor
  (AURORA_TEST_POSTGRES_URL), senão sobre o DDL que o Alembic ou os models geram para o
  dialeto postgresql; o cenário registra qual dos dois usou.

  @OS-004 @AC-01
  Cenário: O model Contact mapeia a tabela crm_contacts com as colunas da OS
    Dado o model "Contact" do crm_core
    Então ele mapeia a tabela "crm_contacts"
    E a tabela tem as colunas:
      | coluna       | obrigatória |
      | id           | sim         |
      | source       | sim         |
      | sender_id    | sim         |
      | display_name | não         |
      | attributes   | sim         |
      | created_at   | sim         |
      | updated_at   | sim         |
    E a chave primária da tabela é "id"
    E a tabela tem uma restrição de unicidade em "source, sender_id"
    E as colunas "created_at, updated_at" guardam data e hora com fuso horário

  @OS-004 @AC-01
  Esquema do Cenário: O banco impõe a unicidade de (source, sender_id) e devolve datas com fuso (<banco>)
    Dado um banco <banco> com as tabelas criadas a partir dos models
    Então o banco recusa um segundo contato com a mesma origem e o mesmo remetente
    E o banco devolve as datas de criação e de atualização de um contato com fuso horário

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-004 @AC-02
  Cenário: O model Deal mapeia a tabela crm_deals com a chave estrangeira para crm_contacts
    Dado o model "Deal" do crm_core
    Então ele mapeia a tabela "crm_deals"
    E a tabela tem as colunas:
      | coluna     | obrigatória |
      | id         | sim         |
      | contact_id | sim         |
      | title      | sim         |
      | pipeline   | sim         |
      | stage      | sim         |
      | amount     | não         |
      | currency   | sim         |
      | attributes | sim         |
      | created_at | sim         |
      | updated_at | sim         |
    E a chave primária da tabela é "id"
    E a tabela tem a chave estrangeira "crm_deals.contact_id -> crm_contacts.id"
    E as colunas "created_at, updated_at" guardam data e hora com fuso horário

  @OS-004 @AC-02
  Esquema do Cenário: O banco recusa um negócio de um contato que não existe (<banco>)
    Dado um banco <banco> com as tabelas criadas a partir dos models
    Então o banco aceita um negócio de um contato existente
    E o banco recusa um negócio de um contato que não existe

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-004 @AC-03
  Cenário: A rota POST /ingest/message está registrada no app
    Dado o app criado por "crm_core.main.create_app()"
    Então a rota "POST /ingest/message" está registrada no app
    E a rota "POST /ingest/message" está no esquema OpenAPI do app
    E a rota "POST /ingest/message" também está no app "crm_core.main:app" que o uvicorn serve

  @OS-004 @AC-03
  Cenário: O endpoint aceita o exemplo da OS com 202 e um recibo
    Dado o app criado por "crm_core.main.create_app()"
    Quando eu envio "POST /ingest/message" com Content-Type "application/json" e o corpo:
      """json
      {
        "source": "whatsapp",
        "sender_id": "5511999999999",
        "content": "teste",
        "metadata": {}
      }
      """
    Então a resposta tem o status 202
    E a resposta é um recibo "accepted" com um id e a hora de recebimento em UTC

  @OS-004 @AC-03
  Esquema do Cenário: O endpoint recusa um corpo inválido com problem+json (<caso>)
    Dado o app criado por "crm_core.main.create_app()"
    Quando eu envio "POST /ingest/message" com Content-Type "<tipo>" e o corpo:
      """
      <corpo>
      """
    Então a resposta tem o status <status>
    E a resposta é um problem+json com o status <status>

    Exemplos:
      | caso                  | tipo             | corpo                                                                                   | status |
      | JSON malformado       | application/json | {"source": "whatsapp",                                                                  | 400    |
      | sem sender_id         | application/json | {"source": "whatsapp", "content": "teste", "metadata": {}}                              | 422    |
      | source fora do padrão | application/json | {"source": "WhatsApp!", "sender_id": "5511999999999", "content": "teste", "metadata": {}} | 422    |
      | corpo que não é JSON  | text/plain       | teste                                                                                   | 415    |

  @OS-004 @AC-04
  Cenário: A migração de contacts e deals está versionada no repositório
    Dada a migração "alembic/versions/20260103_0002_contacts_deals.py" do repositório
    Então o arquivo da migração existe
    E o Alembic carrega o arquivo como a revisão "0002", que segue a revisão "0001"
    E a revisão "0002" está na linha única de revisões que leva à head do Alembic

  @OS-004 @AC-04
  Esquema do Cenário: "alembic upgrade head" cria crm_contacts, crm_deals e a chave estrangeira; "downgrade base" as remove (<banco>)
    Dado um banco <banco> vazio
    Quando eu aplico "alembic upgrade head"
    Então o banco tem as tabelas "crm_contacts, crm_deals"
    E o banco tem a chave estrangeira "crm_deals.contact_id -> crm_contacts.id"
    E o banco tem a restrição de unicidade "crm_contacts (source, sender_id)"
    Quando eu aplico "alembic downgrade base"
    Então o banco não tem as tabelas "crm_contacts, crm_deals"

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-004 @AC-04
  Esquema do Cenário: O esquema que a migração cria coincide com o dos models (<banco>)
    Dado um banco <banco> vazio
    Quando eu aplico "alembic upgrade head"
    Então o esquema do banco coincide com o dos models

    Exemplos:
      | banco      |
      | SQLite     |
      | PostgreSQL |

  @OS-004 @AC-05
  Esquema do Cenário: Nos models, attributes é JSON com a variante JSONB no PostgreSQL (dialeto <dialeto>)
    Dadas as colunas "crm_contacts.attributes, crm_deals.attributes" dos models
    Então o tipo genérico de cada coluna é "JSON"
    E cada coluna compila como "<tipo>" no dialeto "<dialeto>"

    Exemplos:
      | dialeto    | tipo  |
      | sqlite     | JSON  |
      | postgresql | JSONB |

  @OS-004 @AC-05
  Esquema do Cenário: Depois de "alembic upgrade head", attributes é <tipo> no catálogo do <banco>
    Dado um banco <banco> vazio
    Quando eu aplico "alembic upgrade head"
    Então a coluna "crm_contacts.attributes" tem o tipo "<tipo>" no catálogo
    E a coluna "crm_deals.attributes" tem o tipo "<tipo>" no catálogo

    Exemplos:
      | banco      | tipo  |
      | SQLite     | json  |
      | PostgreSQL | jsonb |
