-- Batch tables computed by the Dagster assets (clickguard_dagster/assets/) and served by the
-- API (api/routes/). Column names are the original API's field names (../shared/BRIEF.md).
-- Assets replace whole days inside one transaction, so each table is keyed by its day.

CREATE TABLE IF NOT EXISTS daily_sessions (
    session_id    bigint      NOT NULL,
    session_start timestamptz NOT NULL,
    session_day   date        NOT NULL,
    session_end   timestamptz NOT NULL,
    duration_sec  double precision NOT NULL,
    events        integer     NOT NULL,
    clicks        integer     NOT NULL,
    cart_adds     integer     NOT NULL,
    purchases     integer     NOT NULL,
    revenue       numeric(14, 2) NOT NULL,
    converted     boolean     NOT NULL,
    entry_page    text,
    exit_page     text,
    PRIMARY KEY (session_id, session_start)
);
CREATE INDEX IF NOT EXISTS daily_sessions_day_idx ON daily_sessions (session_day);

CREATE TABLE IF NOT EXISTS daily_metrics (
    metric_date              date PRIMARY KEY,
    total_clicks             bigint NOT NULL,
    total_purchases          bigint NOT NULL,
    unique_sessions          bigint NOT NULL,
    unique_items             bigint NOT NULL,
    conversion_rate          double precision NOT NULL,
    avg_session_duration_sec double precision NOT NULL,
    avg_clicks_per_session   double precision NOT NULL,
    total_revenue            numeric(14, 2) NOT NULL,
    avg_order_value          numeric(14, 2) NOT NULL,
    computed_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS session_funnel (
    metric_date   date    NOT NULL,
    funnel_stage  text    NOT NULL,
    stage_order   integer NOT NULL,
    session_count bigint  NOT NULL,
    percentage    double precision NOT NULL,
    drop_rate     double precision NOT NULL,
    PRIMARY KEY (metric_date, funnel_stage)
);

CREATE TABLE IF NOT EXISTS popular_items (
    metric_date             date    NOT NULL,
    item_id                 bigint  NOT NULL,
    category                text,
    click_count             bigint  NOT NULL,
    purchase_count          bigint  NOT NULL,
    revenue                 numeric(14, 2) NOT NULL,
    rank                    integer NOT NULL,
    click_to_purchase_ratio double precision,
    PRIMARY KEY (metric_date, item_id)
);
CREATE INDEX IF NOT EXISTS popular_items_rank_idx ON popular_items (metric_date, rank);

CREATE TABLE IF NOT EXISTS popular_categories (
    metric_date    date    NOT NULL,
    category       text    NOT NULL,
    click_count    bigint  NOT NULL,
    purchase_count bigint  NOT NULL,
    unique_items   bigint  NOT NULL,
    revenue        numeric(14, 2) NOT NULL,
    rank           integer NOT NULL,
    PRIMARY KEY (metric_date, category)
);
CREATE INDEX IF NOT EXISTS popular_categories_rank_idx ON popular_categories (metric_date, rank);

CREATE TABLE IF NOT EXISTS anomaly_daily_summary (
    metric_date     date    NOT NULL,
    anomaly_type    text    NOT NULL,
    anomaly_count   bigint  NOT NULL,
    unique_entities bigint  NOT NULL,
    avg_score       double precision NOT NULL,
    max_score       double precision NOT NULL,
    PRIMARY KEY (metric_date, anomaly_type)
);
