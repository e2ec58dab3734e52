// A customer's state: the time of its last purchase and, per UTC day of the
// last 30, its events, purchases and purchase amount.
package crmstream.peers;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.serialization.Serdes;

final class CustomerRfm {
  static final int WINDOW_DAYS = 30;
  static final long DAY_MS = 86_400_000L;

  static final class Day {
    long day;
    int events;
    int purchases;
    double amount;
  }

  long lastPurchaseMs = -1;
  final List<Day> days = new ArrayList<>();

  // Adds the event and forgets the days that left the window ending on its day.
  void add(long timestampMs, boolean purchase, double amount) {
    long day = Math.floorDiv(timestampMs, DAY_MS);
    days.removeIf(d -> d.day <= day - WINDOW_DAYS);
    Day today = null;
    for (Day d : days) {
      if (d.day == day) today = d;
    }
    if (today == null) {
      today = new Day();
      today.day = day;
      days.add(today);
    }
    today.events++;
    if (purchase) {
      today.purchases++;
      today.amount += amount;
      lastPurchaseMs = Math.max(lastPurchaseMs, timestampMs);
    }
  }

  static final class Serde extends Serdes.WrapperSerde<CustomerRfm> {
    Serde() {
      super(new RfmSerializer(), new RfmDeserializer());
    }
  }

  static final class RfmSerializer implements Serializer<CustomerRfm> {
    @Override
    public byte[] serialize(String topic, CustomerRfm rfm) {
      ByteBuffer b = ByteBuffer.allocate(12 + rfm.days.size() * 24);
      b.putLong(rfm.lastPurchaseMs).putInt(rfm.days.size());
      for (Day d : rfm.days) b.putLong(d.day).putInt(d.events).putInt(d.purchases).putDouble(d.amount);
      return b.array();
    }
  }

  static final class RfmDeserializer implements Deserializer<CustomerRfm> {
    @Override
    public CustomerRfm deserialize(String topic, byte[] bytes) {
      if (bytes == null) return null;
      ByteBuffer b = ByteBuffer.wrap(bytes);
      CustomerRfm rfm = new CustomerRfm();
      rfm.lastPurchaseMs = b.getLong();
      for (int n = b.getInt(); n > 0; n--) {
        Day d = new Day();
        d.day = b.getLong();
        d.events = b.getInt();
        d.purchases = b.getInt();
        d.amount = b.getDouble();
        rfm.days.add(d);
      }
      return rfm;
    }
  }
}
