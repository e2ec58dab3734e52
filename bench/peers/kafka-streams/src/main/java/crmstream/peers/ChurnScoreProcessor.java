// Per event: update the customer's RFM state, predict the churn probability
// with the online logistic model, then train it on the event's label (an
// account_closed event is a churn); forward one JSON score record.
package crmstream.peers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.state.KeyValueStore;

final class ChurnScoreProcessor implements FixedKeyProcessor<String, String, String> {
  // River's LogisticRegression defaults: SGD, learning rate 0.01 for the
  // weights and the intercept, no regularisation.
  private static final double LEARNING_RATE = 0.01;
  private static final ObjectMapper JSON = new ObjectMapper();

  private final double[] weights = new double[4];
  private double intercept = 0;
  private FixedKeyProcessorContext<String, String> context;
  private KeyValueStore<String, CustomerRfm> store;

  @Override
  public void init(FixedKeyProcessorContext<String, String> context) {
    this.context = context;
    this.store = context.getStateStore(ChurnScores.STORE);
  }

  @Override
  public void process(FixedKeyRecord<String, String> record) {
    JsonNode event;
    try {
      event = JSON.readTree(record.value());
    } catch (Exception e) {
      return;  // the generated input is valid JSON; a peer has no dead-letter topic here
    }
    String customer = event.path("customer_id").asText();
    long ts = event.path("timestamp").asLong();
    String type = event.path("type").asText();

    CustomerRfm rfm = store.get(customer);
    if (rfm == null) rfm = new CustomerRfm();
    rfm.add(ts, type.equals("purchase"), event.path("amount").asDouble(0));
    store.put(customer, rfm);

    int events = 0;
    int purchases = 0;
    double monetary = 0;
    for (CustomerRfm.Day d : rfm.days) {
      events += d.events;
      purchases += d.purchases;
      monetary += d.amount;
    }
    double recencyDays =
        rfm.lastPurchaseMs < 0
            ? CustomerRfm.WINDOW_DAYS
            : (ts - rfm.lastPurchaseMs) / (double) CustomerRfm.DAY_MS;
    double[] x = {
      Math.log1p(Math.max(recencyDays, 0)),
      Math.log1p(purchases),
      Math.log1p(monetary),
      Math.log1p(events)
    };

    double z = intercept;
    for (int i = 0; i < x.length; i++) z += weights[i] * x[i];
    double p = 1.0 / (1.0 + Math.exp(-z));
    double y = type.equals("account_closed") ? 1.0 : 0.0;
    double g = p - y;  // gradient of the log loss in z
    for (int i = 0; i < x.length; i++) weights[i] -= LEARNING_RATE * g * x[i];
    intercept -= LEARNING_RATE * g;

    ObjectNode out = JSON.createObjectNode();
    out.put("customer_id", customer);
    out.put("as_of_ms", ts);
    out.put("churn_probability", p);
    out.put("recency_days", recencyDays);
    out.put("frequency_30d", purchases);
    out.put("monetary_30d", monetary);
    out.put("events_30d", events);
    context.forward(record.withValue(out.toString()));
  }
}
