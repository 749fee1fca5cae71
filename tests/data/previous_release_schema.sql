-- The SQLite schema of the releases before migrations, as their create_all made it (before
-- heads.damage, which they added by hand). tests/unit/test_migrations.py upgrades it in place.
CREATE TABLE heads (
	id INTEGER NOT NULL,
	tenant VARCHAR(63) NOT NULL,
	name VARCHAR(64) NOT NULL,
	version INTEGER NOT NULL,
	card_json TEXT NOT NULL,
	created_at DATETIME NOT NULL,
	deleted_at DATETIME,
	PRIMARY KEY (id),
	UNIQUE (tenant, name, version)
);
CREATE INDEX ix_heads_tenant ON heads (tenant);
CREATE TABLE jobs (
	job_id VARCHAR(32) NOT NULL,
	tenant VARCHAR(63) NOT NULL,
	head VARCHAR(64) NOT NULL,
	backbone VARCHAR(128) NOT NULL,
	kind VARCHAR(64) NOT NULL,
	num_examples INTEGER NOT NULL,
	state VARCHAR(16) NOT NULL,
	stage VARCHAR(32) NOT NULL,
	progress DOUBLE NOT NULL,
	error TEXT NOT NULL,
	metrics_json TEXT NOT NULL,
	version INTEGER NOT NULL,
	created_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	PRIMARY KEY (job_id)
);
CREATE INDEX ix_jobs_tenant ON jobs (tenant);
CREATE INDEX ix_jobs_state ON jobs (state);
CREATE TABLE tenants (
	name VARCHAR(63) NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (name)
);
CREATE TABLE api_keys (
	key_id VARCHAR(32) NOT NULL,
	tenant VARCHAR(63) NOT NULL,
	secret_sha256 VARCHAR(64) NOT NULL,
	created_at DATETIME NOT NULL,
	revoked_at DATETIME,
	PRIMARY KEY (key_id),
	FOREIGN KEY(tenant) REFERENCES tenants (name)
);
CREATE INDEX ix_api_keys_tenant ON api_keys (tenant);
