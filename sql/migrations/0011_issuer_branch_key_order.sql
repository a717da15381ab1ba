-- issuers_branch_unique leads with ruc, not tenant_id.
--
-- Every foreign key to issuers (from documents, sequentials,
-- issuer_certificates and more) is checked by PostgreSQL with
--   SELECT 1 FROM ONLY issuers x WHERE tenant_id = $1 AND id = $2 FOR KEY SHARE OF x
-- planned once per connection as a generic plan. Two unique indexes began
-- with tenant_id: issuers_pkey (tenant_id, id) and issuers_branch_unique
-- (tenant_id, ruc, establishment, emission_point). With statistics that give
-- a tenant one or two issuers, as most tenants have, both cost the same to the
-- planner and it took the branch index: every check then read all of the
-- tenant's issuers and filtered on id. A tenant with 200 issuers paid for 200
-- index entries with every document it issued, and its promotion, which
-- checks 1,200 new counters, spent 47 of the 57 ms of its counters' INSERT in
-- those checks. With ruc first the branch index cannot serve a lookup by tenant
-- alone, and each check reads one entry of issuers_pkey. Uniqueness is the
-- same: the same four columns, under the same constraint name.

ALTER TABLE issuers DROP CONSTRAINT issuers_branch_unique;
ALTER TABLE issuers ADD CONSTRAINT issuers_branch_unique UNIQUE (ruc, establishment, emission_point, tenant_id);
