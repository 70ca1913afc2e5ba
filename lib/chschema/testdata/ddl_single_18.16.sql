-- 1/1 events table
CREATE TABLE IF NOT EXISTS events
(
    client_id String,
    event_id String,
    type Enum8('unspecified' = 0, 'pageview' = 1, 'custom' = 2, 'identify' = 3),
    name String,
    timestamp DateTime('UTC'),
    received_at DateTime('UTC'),
    url String,
    hostname String,
    path String,
    title String,
    referrer String,
    browser String,
    browser_version String,
    os String,
    os_version String,
    device_type Enum8('unknown' = 0, 'desktop' = 1, 'mobile' = 2, 'tablet' = 3, 'bot' = 4, 'other' = 5),
    is_bot UInt8,
    referrer_source String,
    referrer_medium String,
    search_term String,
    utm_source String,
    utm_medium String,
    utm_campaign String,
    utm_term String,
    utm_content String,
    country String,
    region String,
    city String,
    language String,
    screen_width UInt16,
    screen_height UInt16,
    timezone String,
    visitor_id UInt64,
    session_id UInt64,
    is_new_visitor UInt8,
    previous_visit DateTime('UTC'),
    prop_keys Array(String),
    prop_values Array(String),
    user_id String,
    ip_truncated String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (client_id, toDate(timestamp), event_id);

-- 2/1 report views
CREATE TABLE IF NOT EXISTS events_hourly
(
    client_id String,
    hour DateTime('UTC'),
    type Enum8('unspecified' = 0, 'pageview' = 1, 'custom' = 2, 'identify' = 3),
    is_bot UInt8,
    events AggregateFunction(uniqExact, String),
    visitors AggregateFunction(uniqExact, UInt64),
    sessions AggregateFunction(uniqExact, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (client_id, hour, type, is_bot);

-- 2/2 report views
CREATE MATERIALIZED VIEW IF NOT EXISTS events_hourly_mv TO events_hourly AS
SELECT
    client_id,
    toStartOfHour(timestamp) AS hour,
    type,
    is_bot,
    uniqExactState(event_id) AS events,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(session_id) AS sessions
FROM events
GROUP BY client_id, hour, type, is_bot;

-- 2/3 report views
INSERT INTO events_hourly
SELECT
    client_id,
    toStartOfHour(timestamp) AS hour,
    type,
    is_bot,
    uniqExactState(event_id) AS events,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(session_id) AS sessions
FROM events
GROUP BY client_id, hour, type, is_bot;

-- 2/4 report views
CREATE TABLE IF NOT EXISTS sessions_daily
(
    client_id String,
    day Date,
    is_bot UInt8,
    session_id UInt64,
    visitor_id AggregateFunction(any, UInt64),
    pageviews AggregateFunction(uniqExactIf, String, UInt8),
    events AggregateFunction(uniqExact, String),
    started AggregateFunction(min, DateTime('UTC')),
    ended AggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (client_id, day, is_bot, session_id);

-- 2/5 report views
CREATE MATERIALIZED VIEW IF NOT EXISTS sessions_daily_mv TO sessions_daily AS
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    session_id,
    anyState(visitor_id) AS visitor_id,
    uniqExactIfState(event_id, type = 'pageview') AS pageviews,
    uniqExactState(event_id) AS events,
    minState(timestamp) AS started,
    maxState(timestamp) AS ended
FROM events
GROUP BY client_id, day, is_bot, session_id;

-- 2/6 report views
INSERT INTO sessions_daily
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    session_id,
    anyState(visitor_id) AS visitor_id,
    uniqExactIfState(event_id, type = 'pageview') AS pageviews,
    uniqExactState(event_id) AS events,
    minState(timestamp) AS started,
    maxState(timestamp) AS ended
FROM events
GROUP BY client_id, day, is_bot, session_id;

-- 2/7 report views
CREATE TABLE IF NOT EXISTS pages_daily
(
    client_id String,
    day Date,
    is_bot UInt8,
    hostname String,
    path String,
    pageviews AggregateFunction(uniqExact, String),
    visitors AggregateFunction(uniqExact, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (client_id, day, is_bot, hostname, path);

-- 2/8 report views
CREATE MATERIALIZED VIEW IF NOT EXISTS pages_daily_mv TO pages_daily AS
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    hostname,
    path,
    uniqExactState(event_id) AS pageviews,
    uniqExactState(visitor_id) AS visitors
FROM events
WHERE type = 'pageview'
GROUP BY client_id, day, is_bot, hostname, path;

-- 2/9 report views
INSERT INTO pages_daily
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    hostname,
    path,
    uniqExactState(event_id) AS pageviews,
    uniqExactState(visitor_id) AS visitors
FROM events
WHERE type = 'pageview'
GROUP BY client_id, day, is_bot, hostname, path;

-- 2/10 report views
CREATE TABLE IF NOT EXISTS sources_daily
(
    client_id String,
    day Date,
    is_bot UInt8,
    referrer_source String,
    referrer_medium String,
    utm_source String,
    utm_medium String,
    utm_campaign String,
    pageviews AggregateFunction(uniqExact, String),
    visitors AggregateFunction(uniqExact, UInt64),
    sessions AggregateFunction(uniqExact, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (client_id, day, is_bot, referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign);

-- 2/11 report views
CREATE MATERIALIZED VIEW IF NOT EXISTS sources_daily_mv TO sources_daily AS
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    referrer_source,
    referrer_medium,
    utm_source,
    utm_medium,
    utm_campaign,
    uniqExactState(event_id) AS pageviews,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(session_id) AS sessions
FROM events
WHERE type = 'pageview'
GROUP BY client_id, day, is_bot, referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign;

-- 2/12 report views
INSERT INTO sources_daily
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    referrer_source,
    referrer_medium,
    utm_source,
    utm_medium,
    utm_campaign,
    uniqExactState(event_id) AS pageviews,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(session_id) AS sessions
FROM events
WHERE type = 'pageview'
GROUP BY client_id, day, is_bot, referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign;

-- 3/1 event_key column
ALTER TABLE events ADD COLUMN event_key UInt64 MATERIALIZED cityHash64(event_id);

-- 4/1 report views over event_key
CREATE TABLE IF NOT EXISTS events_hourly_v2
(
    client_id String,
    hour DateTime('UTC'),
    type Enum8('unspecified' = 0, 'pageview' = 1, 'custom' = 2, 'identify' = 3),
    is_bot UInt8,
    events AggregateFunction(uniqExact, UInt64),
    visitors AggregateFunction(uniqExact, UInt64),
    sessions AggregateFunction(uniqExact, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (client_id, hour, type, is_bot);

-- 4/2 report views over event_key
CREATE MATERIALIZED VIEW IF NOT EXISTS events_hourly_v2_mv TO events_hourly_v2 AS
SELECT
    client_id,
    toStartOfHour(timestamp) AS hour,
    type,
    is_bot,
    uniqExactState(event_key) AS events,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(session_id) AS sessions
FROM events
GROUP BY client_id, hour, type, is_bot;

-- 4/3 report views over event_key
INSERT INTO events_hourly_v2
SELECT
    client_id,
    toStartOfHour(timestamp) AS hour,
    type,
    is_bot,
    uniqExactState(event_key) AS events,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(session_id) AS sessions
FROM events
GROUP BY client_id, hour, type, is_bot;

-- 4/4 report views over event_key
CREATE TABLE IF NOT EXISTS sessions_daily_v2
(
    client_id String,
    day Date,
    is_bot UInt8,
    session_id UInt64,
    visitor_id AggregateFunction(any, UInt64),
    pageviews AggregateFunction(uniqExactIf, UInt64, UInt8),
    events AggregateFunction(uniqExact, UInt64),
    started AggregateFunction(min, DateTime('UTC')),
    ended AggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (client_id, day, is_bot, session_id);

-- 4/5 report views over event_key
CREATE MATERIALIZED VIEW IF NOT EXISTS sessions_daily_v2_mv TO sessions_daily_v2 AS
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    session_id,
    anyState(visitor_id) AS visitor_id,
    uniqExactIfState(event_key, type = 'pageview') AS pageviews,
    uniqExactState(event_key) AS events,
    minState(timestamp) AS started,
    maxState(timestamp) AS ended
FROM events
GROUP BY client_id, day, is_bot, session_id;

-- 4/6 report views over event_key
INSERT INTO sessions_daily_v2
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    session_id,
    anyState(visitor_id) AS visitor_id,
    uniqExactIfState(event_key, type = 'pageview') AS pageviews,
    uniqExactState(event_key) AS events,
    minState(timestamp) AS started,
    maxState(timestamp) AS ended
FROM events
GROUP BY client_id, day, is_bot, session_id;

-- 4/7 report views over event_key
CREATE TABLE IF NOT EXISTS pages_daily_v2
(
    client_id String,
    day Date,
    is_bot UInt8,
    hostname String,
    path String,
    pageviews AggregateFunction(uniqExact, UInt64),
    visitors AggregateFunction(uniqExact, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (client_id, day, is_bot, hostname, path);

-- 4/8 report views over event_key
CREATE MATERIALIZED VIEW IF NOT EXISTS pages_daily_v2_mv TO pages_daily_v2 AS
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    hostname,
    path,
    uniqExactState(event_key) AS pageviews,
    uniqExactState(visitor_id) AS visitors
FROM events
WHERE type = 'pageview'
GROUP BY client_id, day, is_bot, hostname, path;

-- 4/9 report views over event_key
INSERT INTO pages_daily_v2
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    hostname,
    path,
    uniqExactState(event_key) AS pageviews,
    uniqExactState(visitor_id) AS visitors
FROM events
WHERE type = 'pageview'
GROUP BY client_id, day, is_bot, hostname, path;

-- 4/10 report views over event_key
CREATE TABLE IF NOT EXISTS sources_daily_v2
(
    client_id String,
    day Date,
    is_bot UInt8,
    referrer_source String,
    referrer_medium String,
    utm_source String,
    utm_medium String,
    utm_campaign String,
    pageviews AggregateFunction(uniqExact, UInt64),
    visitors AggregateFunction(uniqExact, UInt64),
    sessions AggregateFunction(uniqExact, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (client_id, day, is_bot, referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign);

-- 4/11 report views over event_key
CREATE MATERIALIZED VIEW IF NOT EXISTS sources_daily_v2_mv TO sources_daily_v2 AS
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    referrer_source,
    referrer_medium,
    utm_source,
    utm_medium,
    utm_campaign,
    uniqExactState(event_key) AS pageviews,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(session_id) AS sessions
FROM events
WHERE type = 'pageview'
GROUP BY client_id, day, is_bot, referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign;

-- 4/12 report views over event_key
INSERT INTO sources_daily_v2
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    referrer_source,
    referrer_medium,
    utm_source,
    utm_medium,
    utm_campaign,
    uniqExactState(event_key) AS pageviews,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(session_id) AS sessions
FROM events
WHERE type = 'pageview'
GROUP BY client_id, day, is_bot, referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign;

-- 4/13 report views over event_key
DROP TABLE IF EXISTS events_hourly_mv;

-- 4/14 report views over event_key
DROP TABLE IF EXISTS events_hourly;

-- 4/15 report views over event_key
DROP TABLE IF EXISTS sessions_daily_mv;

-- 4/16 report views over event_key
DROP TABLE IF EXISTS sessions_daily;

-- 4/17 report views over event_key
DROP TABLE IF EXISTS pages_daily_mv;

-- 4/18 report views over event_key
DROP TABLE IF EXISTS pages_daily;

-- 4/19 report views over event_key
DROP TABLE IF EXISTS sources_daily_mv;

-- 4/20 report views over event_key
DROP TABLE IF EXISTS sources_daily;

-- 5/1 sampling key
CREATE TABLE IF NOT EXISTS events_sampled
(
    client_id String,
    event_id String,
    type Enum8('unspecified' = 0, 'pageview' = 1, 'custom' = 2, 'identify' = 3),
    name String,
    timestamp DateTime('UTC'),
    received_at DateTime('UTC'),
    url String,
    hostname String,
    path String,
    title String,
    referrer String,
    browser String,
    browser_version String,
    os String,
    os_version String,
    device_type Enum8('unknown' = 0, 'desktop' = 1, 'mobile' = 2, 'tablet' = 3, 'bot' = 4, 'other' = 5),
    is_bot UInt8,
    referrer_source String,
    referrer_medium String,
    search_term String,
    utm_source String,
    utm_medium String,
    utm_campaign String,
    utm_term String,
    utm_content String,
    country String,
    region String,
    city String,
    language String,
    screen_width UInt16,
    screen_height UInt16,
    timezone String,
    visitor_id UInt64,
    session_id UInt64,
    is_new_visitor UInt8,
    previous_visit DateTime('UTC'),
    prop_keys Array(String),
    prop_values Array(String),
    user_id String,
    ip_truncated String,
    event_key UInt64 MATERIALIZED cityHash64(event_id),
    sample_key UInt32 MATERIALIZED intHash32(visitor_id)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (client_id, toDate(timestamp), sample_key, event_id)
SAMPLE BY sample_key;

-- 5/2 sampling key
RENAME TABLE events_sampled TO events_swapping, events TO events_unsampled, events_swapping TO events;

-- 5/3 sampling key
INSERT INTO events (client_id, event_id, type, name, timestamp, received_at, url, hostname, path, title, referrer, browser, browser_version, os, os_version, device_type, is_bot, referrer_source, referrer_medium, search_term, utm_source, utm_medium, utm_campaign, utm_term, utm_content, country, region, city, language, screen_width, screen_height, timezone, visitor_id, session_id, is_new_visitor, previous_visit, prop_keys, prop_values, user_id, ip_truncated)
SELECT client_id, event_id, type, name, timestamp, received_at, url, hostname, path, title, referrer, browser, browser_version, os, os_version, device_type, is_bot, referrer_source, referrer_medium, search_term, utm_source, utm_medium, utm_campaign, utm_term, utm_content, country, region, city, language, screen_width, screen_height, timezone, visitor_id, session_id, is_new_visitor, previous_visit, prop_keys, prop_values, user_id, ip_truncated FROM events_unsampled;

-- 5/4 sampling key
DROP TABLE IF EXISTS events_unsampled;

-- 5/5 sampling key
DROP TABLE IF EXISTS events_hourly_v2_mv;

-- 5/6 sampling key
DROP TABLE IF EXISTS sessions_daily_v2_mv;

-- 5/7 sampling key
DROP TABLE IF EXISTS pages_daily_v2_mv;

-- 5/8 sampling key
DROP TABLE IF EXISTS sources_daily_v2_mv;

-- 6/1 erased_visitors table
CREATE TABLE IF NOT EXISTS erased_visitors (
    client_id String,
    visitor_id UInt64,
    requested_at DateTime('UTC'),
    mutations Array(String),
    first_day Date,
    last_day Date,
    views_rebuilt UInt8
) ENGINE = ReplacingMergeTree ORDER BY (client_id, visitor_id);

-- 7/1 drop report views
DROP TABLE IF EXISTS events_hourly_v2_mv;

-- 7/2 drop report views
DROP TABLE IF EXISTS events_hourly_v2;

-- 7/3 drop report views
DROP TABLE IF EXISTS sessions_daily_v2_mv;

-- 7/4 drop report views
DROP TABLE IF EXISTS sessions_daily_v2;

-- 7/5 drop report views
DROP TABLE IF EXISTS pages_daily_v2_mv;

-- 7/6 drop report views
DROP TABLE IF EXISTS pages_daily_v2;

-- 7/7 drop report views
DROP TABLE IF EXISTS sources_daily_v2_mv;

-- 7/8 drop report views
DROP TABLE IF EXISTS sources_daily_v2;

-- 8/1 rolled-up sessions
CREATE TABLE IF NOT EXISTS sessions_hourly
(
    client_id String,
    day Date,
    roll UInt64,
    hour DateTime('UTC'),
    is_bot UInt8,
    session_id UInt64,
    visitor_id UInt64,
    spans UInt8,
    hostname String,
    referrer_source String,
    referrer String,
    referrer_medium String,
    search_term String,
    utm_source String,
    utm_medium String,
    utm_campaign String,
    utm_term String,
    utm_content String,
    browser String,
    browser_version String,
    os String,
    os_version String,
    device_type Enum8('unknown' = 0, 'desktop' = 1, 'mobile' = 2, 'tablet' = 3, 'bot' = 4, 'other' = 5),
    country String,
    region String,
    city String,
    pageviews UInt32,
    events UInt32,
    started DateTime('UTC'),
    ended DateTime('UTC'),
    entry String,
    entry_at DateTime('UTC'),
    exit String,
    exit_at DateTime('UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (client_id, hour, session_id);

-- 8/2 rolled-up sessions
CREATE TABLE IF NOT EXISTS session_rolls
(
    client_id String,
    day Date,
    roll UInt64,
    rows UInt64
)
ENGINE = ReplacingMergeTree(roll)
ORDER BY (client_id, day);

