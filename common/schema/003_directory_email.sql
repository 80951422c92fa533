-- 003: users from the company directory (LDAP/Active Directory) and the
-- e-mail sent to users. Additive: a node of the previous release keeps
-- working against it (its statements name their columns), and what it writes
-- to users still queues the e-mails below.

-- Where a user comes from: typed in here ('local': the API, a CSV import,
-- mfactl) or kept by the directory sync ('directory'). The sync only ever
-- touches users of its own, and never their PIN, method or tokens.
ALTER TABLE users
    ADD COLUMN source text NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'directory')),
    -- the entry's DN, bound to when the first factor is the directory password
    ADD COLUMN directory_dn text CHECK (length(directory_dn) <= 1024),
    -- set when a sync disabled the user because the entry left the directory;
    -- cleared (and the user enabled again) when it comes back. A user an
    -- administrator disabled has it NULL and stays disabled.
    ADD COLUMN directory_missing_since timestamptz,
    ADD COLUMN directory_synced_at timestamptz;

-- One row per directory sync, scheduled or asked for: what it changed, or
-- why it changed nothing. The node on the primary schedules the next one from
-- the newest row, so the interval holds across a failover.
CREATE TABLE directory_syncs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    node_id      text NOT NULL,
    trigger      text NOT NULL CHECK (trigger IN ('schedule', 'mfactl')),
    result       text NOT NULL CHECK (result IN ('ok', 'refused', 'failed', 'dry_run')),
    report       jsonb NOT NULL DEFAULT '{}',
    error        text NOT NULL DEFAULT ''
);
CREATE INDEX directory_syncs_started ON directory_syncs (started_at);

-- E-mail to users, queued in the same transaction as the event it tells of
-- and sent by the node on the primary, at least once. event_id makes the
-- Message-ID, so a resend (after a failover, say) is the same message.
-- What the message says is fixed here, at the event.
CREATE TABLE email_outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    event            text NOT NULL
                     CHECK (event IN ('enrolled', 'method_changed', 'pin_reset', 'locked',
                                      'email_changed', 'pin_removed', 'token_enrolled')),
    username         text NOT NULL,
    display_name     text NOT NULL DEFAULT '',
    to_addr          text NOT NULL CHECK (length(to_addr) <= 256),
    method           text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    given_up_at      timestamptz,
    last_error       text NOT NULL DEFAULT ''
);
CREATE INDEX email_outbox_due ON email_outbox (next_attempt_at)
    WHERE sent_at IS NULL AND given_up_at IS NULL;
CREATE INDEX email_outbox_user ON email_outbox (lower(username), created_at);

-- The user events that send e-mail, queued by the database itself so that
-- every way of changing a user (the API, a CSV import, the portal, the
-- directory sync, an older node during a rolling upgrade) queues them in its
-- own transaction. "locked" is the node's: the threshold is its setting.
-- A disabled user, or one without an address, gets none. SET
-- mfa.email_events = 'off' in a session queues nothing (bulk repairs).
--
-- A change of address is what taking an account over looks like, so
-- everything one statement changes together with the address goes to the
-- address it had before (email_changed, and method_changed, pin_reset or
-- pin_removed of the same UPDATE): the owner hears of it, not the taker. One
-- UPDATE queues one row per event it makes, each event at most once. A
-- change of phone number sends nothing.
CREATE FUNCTION email_user_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    addr text := NEW.email;
    evs text[] := '{}';
BEGIN
    IF coalesce(current_setting('mfa.email_events', true), '') = 'off' OR NEW.disabled THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        evs := ARRAY['enrolled'];
    ELSE
        IF NEW.email IS DISTINCT FROM OLD.email AND OLD.email <> '' THEN
            addr := OLD.email;
            evs := evs || 'email_changed'::text;
        END IF;
        IF NEW.method IS DISTINCT FROM OLD.method THEN
            evs := evs || 'method_changed'::text;
        END IF;
        IF NEW.pin_hash IS NOT NULL AND NEW.pin_hash IS DISTINCT FROM OLD.pin_hash THEN
            evs := evs || 'pin_reset'::text;
        ELSIF NEW.pin_hash IS NULL AND OLD.pin_hash IS NOT NULL THEN
            evs := evs || 'pin_removed'::text;
        END IF;
    END IF;
    IF addr = '' THEN
        RETURN NULL;
    END IF;
    INSERT INTO email_outbox (event, username, display_name, to_addr, method)
        SELECT ev, NEW.username, NEW.display_name, addr, NEW.method
        FROM unnest(evs) WITH ORDINALITY AS e(ev, n) ORDER BY n;
    RETURN NULL;
END $$;

CREATE TRIGGER users_email_event AFTER INSERT OR UPDATE OF method, pin_hash, email ON users
    FOR EACH ROW EXECUTE FUNCTION email_user_event();

-- A TOTP/HOTP token given to a user (a new one, or one moved from someone
-- else) can make that user's codes from now on: the user hears of it.
CREATE FUNCTION email_token_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('mfa.email_events', true), '') = 'off' OR NEW.user_id IS NULL
       OR (TG_OP = 'UPDATE' AND NEW.user_id IS NOT DISTINCT FROM OLD.user_id) THEN
        RETURN NULL;
    END IF;
    INSERT INTO email_outbox (event, username, display_name, to_addr, method)
        SELECT 'token_enrolled', u.username, u.display_name, u.email, u.method
        FROM users u WHERE u.id = NEW.user_id AND u.email <> '' AND NOT u.disabled;
    RETURN NULL;
END $$;

CREATE TRIGGER oath_tokens_email_event AFTER INSERT OR UPDATE OF user_id ON oath_tokens
    FOR EACH ROW EXECUTE FUNCTION email_token_event();

-- A failed sign-in, counted on the primary (the node's write with
-- synchronous_commit off): the failures of <username> from <client_ip> go up
-- (starting again at 1 once <window_s> passed since the last one), and when
-- the user's failures from every address within <window_s> reach <max_total>
-- (node.lockout.max_failures_total: the node's setting, so the node passes
-- it) the "locked" message is queued, once per lock. Failures of one user
-- take turns on an advisory lock, and each statement below reads after the
-- turn was taken (a function's own statements take fresh snapshots), so two
-- nodes counting at the same moment see each other: one message, never two,
-- never none.
CREATE FUNCTION lockout_failure(p_username text, p_client_ip text, p_window_s integer,
                                p_max_total integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    total integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('mfa-locked:' || lower(p_username)));
    INSERT INTO lockouts AS l (username, client_ip, failures, last_failure)
        VALUES (lower(p_username), p_client_ip, 1, now())
        ON CONFLICT (username, client_ip) DO UPDATE SET last_failure = now(),
            failures = CASE WHEN l.last_failure < now() - make_interval(secs => p_window_s)
                            THEN 1 ELSE l.failures + 1 END;
    SELECT coalesce(sum(o.failures), 0) INTO total FROM lockouts o
        WHERE o.username = lower(p_username)
          AND o.last_failure > now() - make_interval(secs => p_window_s);
    IF total >= p_max_total AND NOT EXISTS (SELECT 1 FROM email_outbox e
            WHERE lower(e.username) = lower(p_username) AND e.event = 'locked'
              AND e.created_at > now() - make_interval(secs => p_window_s)) THEN
        INSERT INTO email_outbox (event, username, display_name, to_addr, method)
            SELECT 'locked', u.username, u.display_name, u.email, u.method FROM users u
            WHERE lower(u.username) = lower(p_username) AND u.email <> '' AND NOT u.disabled;
    END IF;
    RETURN total;
END $$;
