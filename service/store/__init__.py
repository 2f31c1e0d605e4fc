"""What the service keeps: the database, the signed audit log, API tokens, the instance.

`database` opens SQLite or PostgreSQL and migrates it (`migrations/`, tables in `tables`);
`audit` appends HMAC-chained records, committed before the caller sees an answer, and reads and
verifies them; `tokens` stores token hashes and says whose a token is (a `Principal`);
`instance` is the configuration from the environment and the instance folder; `json_text`
writes the canonical JSON that records are signed over. Nothing here knows rules or HTTP.
"""
