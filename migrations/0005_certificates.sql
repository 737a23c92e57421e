-- Certificates from an ACME CA for attached domains, the ACME account per directory, and every
-- order Pier placed (for the CA's rate limits).

-- One account per ACME directory. `credentials` is instant-acme's account JSON (it holds the
-- account's private key), sealed with the operator's secret key.
CREATE TABLE acme_accounts (
    id          INTEGER PRIMARY KEY,
    directory   TEXT    NOT NULL UNIQUE,
    account_url TEXT    NOT NULL,
    credentials TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

-- A domain's certificate. `status`: pending (none yet), valid, renewing (a valid one serves while
-- a new one is ordered), failed (none, and the last order failed). The private key is sealed.
CREATE TABLE certificates (
    domain_id       INTEGER PRIMARY KEY REFERENCES domains (id) ON DELETE CASCADE,
    name            TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'valid', 'renewing', 'failed')),
    chain_pem       TEXT,
    sealed_key      TEXT,
    serial          TEXT,
    not_before      INTEGER,
    not_after       INTEGER,
    -- When to order the next one (ARI's window when the CA offers it, else a third of the
    -- lifetime before expiry, with jitter).
    renew_at        INTEGER,
    -- The CA's words the last time an order failed, and when Pier tries again.
    error           TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- Every order: for "no new order after 5 failed validations in an hour" and the weekly budget
-- per registered domain.
CREATE TABLE acme_orders (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    registered TEXT    NOT NULL,
    started_at INTEGER NOT NULL,
    outcome    TEXT    NOT NULL CHECK (outcome IN ('issued', 'invalid', 'error')),
    error      TEXT
);
CREATE INDEX acme_orders_name ON acme_orders (name, started_at);
CREATE INDEX acme_orders_registered ON acme_orders (registered, started_at);
