"""Independent computation of the batch tables with pandas over the same `events` rows."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import psycopg

CENT = Decimal("0.01")


def events_frame(conn: psycopg.Connection) -> pd.DataFrame:
    cur = conn.execute(
        "SELECT event_id, event_ts, session_id, event_type, item_id, category, price, quantity,"
        " page FROM events"
    )
    df = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
    df["event_ts"] = pd.to_datetime(df["event_ts"], utc=True)
    df["day"] = df["event_ts"].dt.date
    return df


def sessions(ev: pd.DataFrame, gap_s: float = 1800) -> pd.DataFrame:
    """One row per session: cut at UTC midnight and at gaps > gap_s."""
    out = []
    ev = ev.sort_values(["session_id", "day", "event_ts", "event_id"])
    for (sid, day), g in ev.groupby(["session_id", "day"], sort=True):
        current: list = []
        last = None
        for row in g.itertuples():
            if last is not None and (row.event_ts - last).total_seconds() > gap_s:
                out.append(_session(sid, day, current))
                current = []
            current.append(row)
            last = row.event_ts
        out.append(_session(sid, day, current))
    return pd.DataFrame(out)


def _session(sid: int, day, rows: list) -> dict:
    purchases = [r for r in rows if r.event_type == "purchase"]
    revenue = sum((r.price * int(r.quantity) for r in purchases), Decimal(0)).quantize(CENT)
    return {
        "session_id": sid, "session_day": day, "session_start": rows[0].event_ts,
        "session_end": rows[-1].event_ts,
        "duration_sec": (rows[-1].event_ts - rows[0].event_ts).total_seconds(),
        "events": len(rows),
        "clicks": sum(r.event_type == "click" for r in rows),
        "cart_adds": sum(r.event_type == "add_to_cart" for r in rows),
        "purchases": len(purchases), "revenue": revenue, "converted": bool(purchases),
        "entry_page": rows[0].page, "exit_page": rows[-1].page,
    }


def metrics(ev: pd.DataFrame, ses: pd.DataFrame) -> pd.DataFrame:
    out = []
    for day, s in ses.groupby("session_day"):
        e = ev[ev["day"] == day]
        revenue = sum(s["revenue"], Decimal(0))
        purchases = int(s["purchases"].sum())
        aov = (revenue / purchases).quantize(CENT, ROUND_HALF_UP) if purchases else Decimal("0.00")
        out.append({
            "metric_date": day, "total_clicks": int(s["clicks"].sum()),
            "total_purchases": purchases, "unique_sessions": s["session_id"].nunique(),
            "unique_items": e["item_id"].dropna().nunique(),
            "conversion_rate": round(s["converted"].sum() / len(s), 6),
            "avg_session_duration_sec": round(s["duration_sec"].mean(), 6),
            "avg_clicks_per_session": round(s["clicks"].sum() / len(s), 6),
            "total_revenue": revenue, "avg_order_value": aov,
        })
    return pd.DataFrame(out)


def funnel(ses: pd.DataFrame) -> pd.DataFrame:
    out = []
    for day, s in ses.groupby("session_day"):
        bought = s["purchases"] > 0
        cart = (s["cart_adds"] > 0) | bought
        counts = [len(s), int(((s["clicks"] > 0) | cart).sum()), int(cart.sum()),
                  int(bought.sum())]
        for i, stage in enumerate(["session", "click", "add_to_cart", "purchase"]):
            prev = counts[i - 1] if i else None
            out.append({
                "metric_date": day, "funnel_stage": stage, "stage_order": i + 1,
                "session_count": counts[i],
                "percentage": round(counts[i] * 100.0 / counts[0], 4),
                "drop_rate": round((1 - counts[i] / prev) * 100.0, 4) if prev else 0.0,
            })
    return pd.DataFrame(out)


def items(ev: pd.DataFrame, limit: int) -> pd.DataFrame:
    e = ev[ev["item_id"].notna()]
    out = []
    for (day, item), g in e.groupby(["day", "item_id"]):
        p = g[g["event_type"] == "purchase"]
        clicks = int((g["event_type"] == "click").sum())
        cats = g["category"].dropna()
        out.append({
            "metric_date": day, "item_id": int(item),
            "category": cats.max() if len(cats) else None, "click_count": clicks,
            "purchase_count": len(p),
            "revenue": sum((r.price * int(r.quantity) for r in p.itertuples()), Decimal(0)),
            "click_to_purchase_ratio": round(len(p) / clicks, 6) if clicks else None,
        })
    df = pd.DataFrame(out).sort_values(
        ["metric_date", "click_count", "purchase_count", "item_id"],
        ascending=[True, False, False, True],
    )
    df["rank"] = df.groupby("metric_date").cumcount() + 1
    return df[df["rank"] <= limit]


def categories(ev: pd.DataFrame) -> pd.DataFrame:
    e = ev[ev["category"].notna() & ev["item_id"].notna()]
    out = []
    for (day, cat), g in e.groupby(["day", "category"]):
        p = g[g["event_type"] == "purchase"]
        out.append({
            "metric_date": day, "category": cat,
            "click_count": int((g["event_type"] == "click").sum()), "purchase_count": len(p),
            "unique_items": g["item_id"].nunique(),
            "revenue": sum((r.price * int(r.quantity) for r in p.itertuples()), Decimal(0)),
        })
    df = pd.DataFrame(out).sort_values(
        ["metric_date", "click_count", "purchase_count", "category"],
        ascending=[True, False, False, True],
    )
    df["rank"] = df.groupby("metric_date").cumcount() + 1
    return df


def table(conn: psycopg.Connection, sql: str) -> pd.DataFrame:
    cur = conn.execute(sql)
    return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
