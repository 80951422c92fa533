-- 001: the first schema. Users, API keys, OATH tokens, the auth log,
-- cluster settings, and the version table the migrations keep.
--
-- Secrets are never stored in clear (DESIGN §2): pin_hash is a salted HMAC
-- with the pepper from the appliance key file, key_hash a SHA-256 of a long
-- random API key, seed_sealed an AES-256-GCM box under the key file's
-- sealing key. A dump of this database reveals neither PINs nor seeds.

CREATE TABLE schema_version (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL CHECK (username ~ '^[^[:space:][:cntrl:]]{1,128}$'),
    display_name  text NOT NULL DEFAULT '' CHECK (length(display_name) <= 256),
    email         text NOT NULL DEFAULT '' CHECK (length(email) <= 256),
    phone         text NOT NULL DEFAULT '' CHECK (phone ~ '^(\+?[0-9]{3,20})?$'),
    method        text NOT NULL CHECK (method IN ('sms', 'totp', 'hotp', 'push')),
    pin_hash      text,          -- pin1$<pepper id>$<salt>$<mac>; NULL: no PIN
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Usernames are unique whatever their case: "Alice" and "alice" are one user.
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    scope       text NOT NULL CHECK (scope IN ('auth', 'admin')),
    key_hash    text NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    prefix      text NOT NULL,   -- the key's first characters, to tell keys apart
    created_by  text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE oath_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    serial       text NOT NULL UNIQUE CHECK (length(serial) BETWEEN 1 AND 128),
    kind         text NOT NULL CHECK (kind IN ('totp', 'hotp')),
    algorithm    text NOT NULL DEFAULT 'SHA1' CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits       smallint NOT NULL DEFAULT 6 CHECK (digits BETWEEN 6 AND 8),
    period       integer NOT NULL DEFAULT 30 CHECK (period BETWEEN 10 AND 300),
    counter      bigint NOT NULL DEFAULT 0 CHECK (counter >= 0),  -- HOTP: next counter
    last_step    bigint,         -- TOTP: last accepted time step (replay guard)
    drift        integer NOT NULL DEFAULT 0,   -- TOTP: steps the token's clock is off
    seed_sealed  text NOT NULL,  -- s1$<key id>$<nonce|ciphertext|tag>, bound to serial
    user_id      bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX oath_tokens_user ON oath_tokens (user_id);

-- Shipped from each node's spool; (node_id, boot_epoch, seq) makes replay
-- idempotent: a record sent twice is stored once.
CREATE TABLE auth_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node_id       text NOT NULL,
    boot_epoch    bigint NOT NULL,
    seq           bigint NOT NULL,
    at            timestamptz NOT NULL,
    username      text NOT NULL,
    method        text NOT NULL,
    result        text NOT NULL CHECK (result IN ('accepted', 'rejected', 'challenge', 'error')),
    reason        text NOT NULL DEFAULT '',
    server_name   text NOT NULL DEFAULT '',
    server_ip     inet,
    client_ip     inet,
    challenge_id  text,
    received_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT auth_log_origin UNIQUE (node_id, boot_epoch, seq)
);
CREATE INDEX auth_log_at ON auth_log (at);
CREATE INDEX auth_log_user_at ON auth_log (lower(username), at);

-- Cluster-wide settings that an administrator changes at run time.
CREATE TABLE settings (
    key         text PRIMARY KEY,
    value       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
