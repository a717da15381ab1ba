-- What the indexes of 0086 and 0087 are for. Runs again harmlessly.

COMMENT ON INDEX webhook_deliveries_by_endpoint_and_id IS
    'An endpoint''s deliveries by id: the pages of GET /v1/webhooks/:id/events (migration 0086).';
COMMENT ON INDEX webhook_deliveries_failed_by_endpoint IS
    'An endpoint''s failed deliveries by id: GET /v1/webhooks/:id/events?status=failed, the events it missed (migration 0087).';
