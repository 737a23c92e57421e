-- Security round: the panel's own certificate, proof of domain ownership, ACME order budgets.

-- Certificates get their own id: a domain's certificate as before (deleted with its domain), and
-- the panel host's, which belongs to no domain (domain_id NULL). A name has one certificate.
CREATE TABLE certificates_new (
    id              INTEGER PRIMARY KEY,
    domain_id       INTEGER UNIQUE REFERENCES domains (id) ON DELETE CASCADE,
    name            TEXT    NOT NULL UNIQUE,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'valid', 'renewing', 'failed')),
    chain_pem       TEXT,
    sealed_key      TEXT,
    serial          TEXT,
    not_before      INTEGER,
    not_after       INTEGER,
    renew_at        INTEGER,
    error           TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
INSERT INTO certificates_new (id, domain_id, name, status, chain_pem, sealed_key, serial,
                              not_before, not_after, renew_at, error, failures, next_attempt_at,
                              updated_at)
    SELECT domain_id, domain_id, name, status, chain_pem, sealed_key, serial, not_before,
           not_after, renew_at, error, failures, next_attempt_at, updated_at
    FROM certificates;
DROP TABLE certificates;
ALTER TABLE certificates_new RENAME TO certificates;

-- Who an order was for (NULL: the panel) and whether it renewed a certificate that serves: the
-- per-tenant and global order budgets, renewals first. No foreign key: the history outlives users.
ALTER TABLE acme_orders ADD COLUMN user_id INTEGER;
ALTER TABLE acme_orders ADD COLUMN renewal INTEGER NOT NULL DEFAULT 0 CHECK (renewal IN (0, 1));
CREATE INDEX acme_orders_started ON acme_orders (started_at);

-- Proof of ownership: a domain is attached and certified only once its owner showed a TXT record
-- `_pier-challenge.<domain>` holding their token (or the operator turned proofs off). Domains
-- registered before this migration were already in use: they count as proven.
ALTER TABLE domains ADD COLUMN verified_at INTEGER;
UPDATE domains SET verified_at = created_at;
-- Each tenant's token for those TXT records (made the first time it is shown).
ALTER TABLE users ADD COLUMN domain_token TEXT;

-- Images Pier pulled, by the reference it pulled them under (`name:tag` or `name@digest`):
-- those no deployment it keeps (the last few of each app, the serving one, any in progress)
-- needs are removed from the engine, and their rows with them.
CREATE TABLE images (
    reference TEXT    NOT NULL PRIMARY KEY,
    pulled_at INTEGER NOT NULL
);
