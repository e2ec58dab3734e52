// The Kafka Streams peer of bench/peers/run.sh: decode each JSON customer
// event, keep the customer's 30-day RFM counts in a RocksDB state store,
// score and train an online logistic churn model (plain SGD, the update
// River's LogisticRegression makes), and write one JSON record per event.
//
// Usage: ChurnScores BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC APPLICATION_ID STATE_DIR
package crmstream.peers;

import java.util.Properties;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.Stores;

public final class ChurnScores {
  static final String STORE = "customer-rfm";

  public static void main(String[] args) {
    if (args.length != 5) {
      System.err.println("usage: ChurnScores BOOTSTRAP INPUT OUTPUT APPLICATION_ID STATE_DIR");
      System.exit(2);
    }
    Properties props = new Properties();
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[3]);
    props.put(StreamsConfig.STATE_DIR_CONFIG, args[4]);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");

    StreamsBuilder builder = new StreamsBuilder();
    builder.addStateStore(
        Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore(STORE), Serdes.String(), new CustomerRfm.Serde()));
    builder.stream(args[1], Consumed.with(Serdes.String(), Serdes.String()))
        .processValues(ChurnScoreProcessor::new, STORE)
        .to(args[2], Produced.with(Serdes.String(), Serdes.String()));

    KafkaStreams streams = new KafkaStreams(builder.build(), props);
    Runtime.getRuntime().addShutdownHook(new Thread(streams::close));
    streams.start();
  }
}
