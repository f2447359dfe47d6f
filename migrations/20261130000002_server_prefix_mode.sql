-- How a virtual server names federated tools and prompts:
-- always (gateway slug + separator + name), conditional (only on a clash), never.
ALTER TABLE servers ADD COLUMN prefix_mode TEXT NOT NULL DEFAULT 'always';
-- Why a gateway is unreachable, for operators.
ALTER TABLE gateways ADD COLUMN last_error TEXT;
