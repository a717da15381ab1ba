-- The attempts written before migration 0066 checked against its foreign
-- key. VALIDATE CONSTRAINT reads every attempt under a lock that lets the
-- webhook workers go on writing (SHARE UPDATE EXCLUSIVE on the attempts, ROW
-- SHARE on the deliveries).
ALTER TABLE webhook_delivery_attempts VALIDATE CONSTRAINT webhook_delivery_attempts_of_their_delivery;
