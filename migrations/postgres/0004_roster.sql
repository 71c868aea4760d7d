-- The full roster (issue 4): every phone of a person, risk point monitors, duty shifts.
-- Natural keys (contact key, risk point key) rather than ids, so that a sheet can be
-- re-imported in any order and upserted.

-- All numbers of a contact (E.164); position 0 is the primary one (contacts.phone), used for
-- SMS. An SMS reply from any of them finds the person.
CREATE TABLE contact_phones (
    contact_key  TEXT NOT NULL,
    phone        TEXT NOT NULL,
    position     BIGINT NOT NULL,
    PRIMARY KEY (contact_key, phone)
);
CREATE INDEX contact_phones_phone ON contact_phones (phone);

-- 监测员/巡查员 of a risk point.
CREATE TABLE risk_point_monitors (
    risk_point_key  TEXT NOT NULL,
    contact_key     TEXT NOT NULL,
    PRIMARY KEY (risk_point_key, contact_key)
);

-- 值班表: contact_key holds role in region_code during a shift. kind 'cron': starts when
-- cron (seconds first) fires in tz and lasts minutes; kind 'dates': from_at ≤ t < to_at.
-- cron is '' and from_at 0 for the kind that does not use them, so the unique key works
-- alike on both backends (PostgreSQL treats NULLs as distinct).
CREATE TABLE duty_shifts (
    id           BIGSERIAL PRIMARY KEY,
    role         TEXT NOT NULL,
    region_code  TEXT NOT NULL,
    contact_key  TEXT NOT NULL,
    kind         TEXT NOT NULL,
    cron         TEXT NOT NULL DEFAULT '',
    minutes      BIGINT NOT NULL DEFAULT 0,
    tz           TEXT NOT NULL DEFAULT 'Asia/Shanghai',
    from_at      BIGINT NOT NULL DEFAULT 0,
    to_at        BIGINT NOT NULL DEFAULT 0,
    updated_at   BIGINT NOT NULL,
    UNIQUE (role, region_code, contact_key, cron, from_at)
);
CREATE INDEX duty_shifts_region ON duty_shifts (region_code, role);
