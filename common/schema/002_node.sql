-- 002: what mfa-node needs beyond the first schema: the audit log of admin
-- changes, sign-in failures per user and client address (lockout), and the
-- SMS sent (rate limits and the cluster-wide hourly cap).

-- Every admin change: who (the API key's name), what, to what, when.
-- Written in the same statement as the change itself.
CREATE TABLE admin_audit (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    node_id   text NOT NULL,
    action    text NOT NULL,
    target    text NOT NULL DEFAULT '',
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX admin_audit_at ON admin_audit (at);

-- Failed sign-ins per user and client address. A stranger's failures lock
-- the user out from the stranger's address only; failures from every address
-- together (the sum per user) lock the user everywhere.
CREATE TABLE lockouts (
    username      text NOT NULL,
    client_ip     text NOT NULL,
    failures      integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_failure  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (username, client_ip)
);

-- One row per SMS handed to a provider; old rows are pruned by the nodes.
CREATE TABLE sms_sends (
    at        timestamptz NOT NULL DEFAULT now(),
    node_id   text NOT NULL,
    username  text NOT NULL,
    phone     text NOT NULL
);
CREATE INDEX sms_sends_at ON sms_sends (at);
CREATE INDEX sms_sends_user_at ON sms_sends (username, at);
CREATE INDEX sms_sends_phone_at ON sms_sends (phone, at);
