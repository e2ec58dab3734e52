"""The Quix Streams + River peer of bench/peers/run.sh.

Decode each JSON customer event, keep the customer's 30-day RFM counts in
Quix's RocksDB state, score and train River's online LogisticRegression
(predict, then learn: an account_closed event is a churn) and produce one
JSON record per event.

Usage: python app.py BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC CONSUMER_GROUP STATE_DIR
"""

import math
import sys

from quixstreams import Application
from river import linear_model

WINDOW_DAYS = 30
DAY_MS = 86_400_000


def main():
    bootstrap, input_topic, output_topic, group, state_dir = sys.argv[1:6]
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
    )
    events = app.topic(input_topic, value_deserializer="json")
    scores = app.topic(output_topic, value_serializer="json")
    model = linear_model.LogisticRegression()

    def score(event, state):
        ts = int(event["timestamp"])
        day = ts // DAY_MS
        # {day: [events, purchases, amount]} for the days of the window.
        days = {d: v for d, v in state.get("days", {}).items() if int(d) > day - WINDOW_DAYS}
        today = days.setdefault(str(day), [0, 0, 0.0])
        today[0] += 1
        last_purchase_ms = state.get("last_purchase_ms", -1)
        if event["type"] == "purchase":
            today[1] += 1
            today[2] += event.get("amount", 0.0)
            last_purchase_ms = max(last_purchase_ms, ts)
            state.set("last_purchase_ms", last_purchase_ms)
        state.set("days", days)

        n_events = sum(v[0] for v in days.values())
        purchases = sum(v[1] for v in days.values())
        monetary = sum(v[2] for v in days.values())
        recency_days = WINDOW_DAYS if last_purchase_ms < 0 else (ts - last_purchase_ms) / DAY_MS
        x = {
            "recency": math.log1p(max(recency_days, 0.0)),
            "frequency": math.log1p(purchases),
            "monetary": math.log1p(monetary),
            "events": math.log1p(n_events),
        }
        p = model.predict_proba_one(x).get(True, 0.0)
        model.learn_one(x, event["type"] == "account_closed")
        return {
            "customer_id": str(event["customer_id"]),
            "as_of_ms": ts,
            "churn_probability": p,
            "recency_days": recency_days,
            "frequency_30d": purchases,
            "monetary_30d": monetary,
            "events_30d": n_events,
        }

    sdf = app.dataframe(events)
    sdf = sdf.apply(score, stateful=True)
    sdf.to_topic(scores)
    app.run()


if __name__ == "__main__":
    main()
