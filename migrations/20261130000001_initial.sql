-- Portable schema: the same statements run on SQLite and PostgreSQL.
-- Timestamps are RFC 3339 UTC text (sortable), booleans are 0/1 BIGINT,
-- JSON documents are TEXT. Primary keys are UUIDv7 strings (time ordered).

CREATE TABLE users (
    email       TEXT PRIMARY KEY,
    full_name   TEXT,
    is_admin    BIGINT NOT NULL DEFAULT 0,
    is_active   BIGINT NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL
);

CREATE TABLE teams (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    description TEXT,
    created_by  TEXT NOT NULL,
    is_personal BIGINT NOT NULL DEFAULT 0,
    visibility  TEXT NOT NULL DEFAULT 'private',
    is_active   BIGINT NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE team_members (
    team_id     TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_email  TEXT NOT NULL,
    role        TEXT NOT NULL,
    joined_at   TEXT NOT NULL,
    PRIMARY KEY (team_id, user_email)
);
CREATE INDEX idx_team_members_user ON team_members (user_email);

CREATE TABLE gateways (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    slug                TEXT NOT NULL,
    url                 TEXT NOT NULL,
    description         TEXT,
    transport           TEXT NOT NULL,
    capabilities        TEXT NOT NULL DEFAULT '{}',
    passthrough_headers TEXT NOT NULL DEFAULT '[]',
    auth_type           TEXT,
    auth_value          TEXT,
    enabled             BIGINT NOT NULL DEFAULT 1,
    reachable           BIGINT NOT NULL DEFAULT 1,
    last_seen           TEXT,
    tags                TEXT NOT NULL DEFAULT '[]',
    team_id             TEXT REFERENCES teams(id),
    owner_email         TEXT NOT NULL,
    visibility          TEXT NOT NULL DEFAULT 'public',
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE UNIQUE INDEX uq_gateways_slug ON gateways (COALESCE(team_id, ''), owner_email, slug);
CREATE INDEX idx_gateways_team ON gateways (team_id);
CREATE INDEX idx_gateways_visibility ON gateways (visibility, enabled);

CREATE TABLE tools (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    original_name    TEXT NOT NULL,
    custom_name      TEXT,
    display_name     TEXT,
    title            TEXT,
    url              TEXT,
    description      TEXT,
    integration_type TEXT NOT NULL,
    request_type     TEXT NOT NULL,
    headers          TEXT NOT NULL DEFAULT '{}',
    input_schema     TEXT NOT NULL,
    output_schema    TEXT,
    annotations      TEXT NOT NULL DEFAULT '{}',
    jsonpath_filter  TEXT,
    auth_type        TEXT,
    auth_value       TEXT,
    timeout_ms       BIGINT,
    enabled          BIGINT NOT NULL DEFAULT 1,
    reachable        BIGINT NOT NULL DEFAULT 1,
    gateway_id       TEXT REFERENCES gateways(id) ON DELETE CASCADE,
    tags             TEXT NOT NULL DEFAULT '[]',
    team_id          TEXT REFERENCES teams(id),
    owner_email      TEXT NOT NULL,
    visibility       TEXT NOT NULL DEFAULT 'public',
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE UNIQUE INDEX uq_tools_name ON tools (COALESCE(team_id, ''), owner_email, name);
CREATE UNIQUE INDEX uq_tools_gateway_original ON tools (gateway_id, original_name);
CREATE INDEX idx_tools_gateway ON tools (gateway_id);
CREATE INDEX idx_tools_team ON tools (team_id);
CREATE INDEX idx_tools_visibility ON tools (visibility, enabled);

CREATE TABLE resources (
    id           TEXT PRIMARY KEY,
    uri          TEXT NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    mime_type    TEXT,
    size         BIGINT,
    uri_template TEXT,
    text_content TEXT,
    gateway_id   TEXT REFERENCES gateways(id) ON DELETE CASCADE,
    enabled      BIGINT NOT NULL DEFAULT 1,
    tags         TEXT NOT NULL DEFAULT '[]',
    team_id      TEXT REFERENCES teams(id),
    owner_email  TEXT NOT NULL,
    visibility   TEXT NOT NULL DEFAULT 'public',
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE UNIQUE INDEX uq_resources_uri ON resources (COALESCE(team_id, ''), owner_email, uri);
CREATE INDEX idx_resources_gateway ON resources (gateway_id);
CREATE INDEX idx_resources_team ON resources (team_id);
CREATE INDEX idx_resources_visibility ON resources (visibility, enabled);

CREATE TABLE prompts (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    original_name   TEXT NOT NULL,
    description     TEXT,
    template        TEXT NOT NULL DEFAULT '',
    argument_schema TEXT NOT NULL DEFAULT '{}',
    gateway_id      TEXT REFERENCES gateways(id) ON DELETE CASCADE,
    enabled         BIGINT NOT NULL DEFAULT 1,
    tags            TEXT NOT NULL DEFAULT '[]',
    team_id         TEXT REFERENCES teams(id),
    owner_email     TEXT NOT NULL,
    visibility      TEXT NOT NULL DEFAULT 'public',
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE UNIQUE INDEX uq_prompts_name ON prompts (COALESCE(team_id, ''), owner_email, name);
CREATE INDEX idx_prompts_gateway ON prompts (gateway_id);
CREATE INDEX idx_prompts_team ON prompts (team_id);
CREATE INDEX idx_prompts_visibility ON prompts (visibility, enabled);

CREATE TABLE servers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT,
    icon        TEXT,
    enabled     BIGINT NOT NULL DEFAULT 1,
    tags        TEXT NOT NULL DEFAULT '[]',
    team_id     TEXT REFERENCES teams(id),
    owner_email TEXT NOT NULL,
    visibility  TEXT NOT NULL DEFAULT 'public',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX uq_servers_name ON servers (COALESCE(team_id, ''), owner_email, name);
CREATE INDEX idx_servers_team ON servers (team_id);
CREATE INDEX idx_servers_visibility ON servers (visibility, enabled);

CREATE TABLE server_tool_association (
    server_id TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    tool_id   TEXT NOT NULL REFERENCES tools(id) ON DELETE CASCADE,
    PRIMARY KEY (server_id, tool_id)
);
CREATE INDEX idx_sta_tool ON server_tool_association (tool_id);

CREATE TABLE server_resource_association (
    server_id   TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    resource_id TEXT NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
    PRIMARY KEY (server_id, resource_id)
);
CREATE INDEX idx_sra_resource ON server_resource_association (resource_id);

CREATE TABLE server_prompt_association (
    server_id TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    prompt_id TEXT NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
    PRIMARY KEY (server_id, prompt_id)
);
CREATE INDEX idx_spa_prompt ON server_prompt_association (prompt_id);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT,
    user_email  TEXT NOT NULL,
    team_id     TEXT REFERENCES teams(id) ON DELETE CASCADE,
    jti         TEXT NOT NULL UNIQUE,
    token_hash  TEXT NOT NULL,
    server_id   TEXT,
    expires_at  TEXT,
    last_used   TEXT,
    is_active   BIGINT NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX uq_api_tokens_name ON api_tokens (user_email, name);
CREATE INDEX idx_api_tokens_team ON api_tokens (team_id);

CREATE TABLE token_revocations (
    jti        TEXT PRIMARY KEY,
    revoked_at TEXT NOT NULL,
    revoked_by TEXT NOT NULL,
    reason     TEXT
);

CREATE TABLE tool_metrics (
    id            TEXT PRIMARY KEY,
    tool_id       TEXT NOT NULL REFERENCES tools(id) ON DELETE CASCADE,
    timestamp     TEXT NOT NULL,
    response_time DOUBLE PRECISION NOT NULL,
    is_success    BIGINT NOT NULL,
    error_message TEXT
);
CREATE INDEX idx_tool_metrics_tool_time ON tool_metrics (tool_id, timestamp);

-- One row; bumped by every registry write so other instances know to reload.
CREATE TABLE registry_state (
    id      BIGINT PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO registry_state (id, version) VALUES (1, 0);
