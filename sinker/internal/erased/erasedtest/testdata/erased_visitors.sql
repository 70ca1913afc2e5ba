CREATE TABLE IF NOT EXISTS erased_visitors (
    client_id String,
    visitor_id UInt64,
    requested_at DateTime('UTC'),
    mutations Array(String),
    first_day Date,
    last_day Date,
    views_rebuilt UInt8
) ENGINE = ReplacingMergeTree ORDER BY (client_id, visitor_id)
