-- medrelay PostgreSQL schema, version 1.
--
-- Values are the same versioned binary blobs the sled backend stores
-- (decoded with size limits by the server; a corrupt one is an error, never
-- a panic); the columns beside them exist only to index and to select.
-- Unsigned 64-bit times are stored order-preserving as bigint (the top bit
-- flipped), so `expires_at <= now` compares as the u64 values do.

-- The audit log head: ONE row. Every transaction that appends to the log
-- (and every other logged change) locks it first (SELECT ... FOR UPDATE),
-- so appends from every replica are serialized: consecutive indices, no gap,
-- no duplicate, and the Merkle nodes always match the entries.
CREATE TABLE log_head (
    id   smallint PRIMARY KEY CHECK (id = 1),
    size bigint   NOT NULL CHECK (size >= 0)
);
INSERT INTO log_head (id, size) VALUES (1, 0);

-- Each entry's opening (event + salt); the tree holds only leaf hashes.
CREATE TABLE log_entries (
    idx     bigint PRIMARY KEY CHECK (idx >= 0),
    opening bytea  NOT NULL
);

-- Which principals each entry is about (their own history).
CREATE TABLE log_subjects (
    subject bytea  NOT NULL,
    idx     bigint NOT NULL,
    PRIMARY KEY (subject, idx)
);

-- Stored nodes of the RFC 6962 tree (perfect subtrees).
CREATE TABLE merkle_nodes (
    level smallint NOT NULL,
    idx   bigint   NOT NULL,
    hash  bytea    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- The public key that signs this log's checkpoints: every replica must hold
-- the matching secret key (one log, one signer).
CREATE TABLE deployment (
    id          smallint PRIMARY KEY CHECK (id = 1),
    log_key     bytea NOT NULL CHECK (length(log_key) = 32)
);

CREATE TABLE challenges (
    nonce_hash bytea  PRIMARY KEY,
    expires_at bigint NOT NULL,
    value      bytea  NOT NULL
);
CREATE INDEX challenges_expiry ON challenges (expires_at);

CREATE TABLE sessions (
    token_hash bytea  PRIMARY KEY,
    principal  bytea  NOT NULL,
    expires_at bigint NOT NULL,
    value      bytea  NOT NULL
);
CREATE INDEX sessions_principal ON sessions (principal);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE enrollments (
    token_hash bytea  PRIMARY KEY,
    expires_at bigint NOT NULL,
    value      bytea  NOT NULL
);
CREATE INDEX enrollments_expiry ON enrollments (expires_at);

CREATE TABLE principals (
    id    bytea PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE suspensions (
    principal bytea  PRIMARY KEY,
    log_index bigint NOT NULL
);

-- Records: owner-signed metadata and the envelope (bytea, TOASTed out of
-- line when large). Listed by (owner, id): keyset pagination.
CREATE TABLE records (
    id       bytea PRIMARY KEY,
    owner    bytea NOT NULL,
    meta     bytea NOT NULL,
    envelope bytea NOT NULL
);
CREATE INDEX records_owner ON records (owner, id);
-- Ciphertext does not compress: stored out of line as is, without TOAST's
-- compression attempt.
ALTER TABLE records ALTER COLUMN envelope SET STORAGE EXTERNAL;

-- Batch capsules, owner-signed and verified on upload; the records sealed
-- under one name it in their envelopes. The id is the digest of the bytes.
CREATE TABLE capsules (
    id    bytea PRIMARY KEY,
    value bytea NOT NULL
);
ALTER TABLE capsules ALTER COLUMN value SET STORAGE EXTERNAL;

CREATE TABLE grants (
    id      bytea PRIMARY KEY,
    patient bytea NOT NULL,
    doctor  bytea NOT NULL,
    value   bytea NOT NULL
);
CREATE INDEX grants_patient ON grants (patient, id);
CREATE INDEX grants_doctor ON grants (doctor, id);

-- Re-encryption key material (megabytes per grant), deleted on revocation.
CREATE TABLE rekeys (
    grant_id bytea PRIMARY KEY REFERENCES grants (id),
    value    bytea NOT NULL
);
ALTER TABLE rekeys ALTER COLUMN value SET STORAGE EXTERNAL;

-- A capsule's re-encryption under a grant, made once and served again on
-- every later fetch (no fresh lattice noise per ask); deleted with the
-- grant's keys on revocation, in the same transaction.
CREATE TABLE delivered (
    grant_id bytea NOT NULL REFERENCES grants (id),
    capsule  bytea NOT NULL REFERENCES capsules (id),
    value    bytea NOT NULL,
    PRIMARY KEY (grant_id, capsule)
);
ALTER TABLE delivered ALTER COLUMN value SET STORAGE EXTERNAL;

CREATE TABLE dp_schemas (
    name  text  PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE dp_summaries (
    schema_name text  NOT NULL REFERENCES dp_schemas (name),
    patient     bytea NOT NULL,
    value       bytea NOT NULL,
    PRIMARY KEY (schema_name, patient)
);

CREATE TABLE dp_ledgers (
    analyst     bytea NOT NULL,
    schema_name text  NOT NULL,
    value       bytea NOT NULL,
    PRIMARY KEY (analyst, schema_name)
);

-- Private studies (both aggregator roles).
CREATE TABLE studies (
    name  text  PRIMARY KEY,
    value bytea NOT NULL
);
CREATE TABLE study_pending (
    study  text  NOT NULL,
    id     bytea NOT NULL,
    report bytea NOT NULL,
    PRIMARY KEY (study, id)
);
ALTER TABLE study_pending ALTER COLUMN report SET STORAGE EXTERNAL;
CREATE TABLE study_seen (
    study text  NOT NULL,
    id    bytea NOT NULL,
    PRIMARY KEY (study, id)
);
CREATE TABLE study_quota (
    study   text   NOT NULL,
    patient bytea  NOT NULL,
    used    bigint NOT NULL,
    PRIMARY KEY (study, patient)
);
CREATE TABLE study_open_batch (
    study text   PRIMARY KEY,
    batch bigint NOT NULL
);
CREATE TABLE study_jobs (
    study  text  NOT NULL,
    job_id bytea NOT NULL,
    value  bytea NOT NULL,
    PRIMARY KEY (study, job_id)
);
CREATE TABLE study_job_responses (
    study    text  NOT NULL,
    job_id   bytea NOT NULL,
    hash     bytea NOT NULL,
    response bytea NOT NULL,
    PRIMARY KEY (study, job_id)
);
CREATE TABLE study_batches (
    study text   NOT NULL,
    batch bigint NOT NULL,
    value bytea  NOT NULL,
    PRIMARY KEY (study, batch)
);
