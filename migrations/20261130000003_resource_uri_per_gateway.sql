-- Two upstreams may offer the same resource URI: uniqueness is per gateway.
DROP INDEX uq_resources_uri;
CREATE UNIQUE INDEX uq_resources_uri ON resources (COALESCE(team_id, ''), owner_email, COALESCE(gateway_id, ''), uri);
