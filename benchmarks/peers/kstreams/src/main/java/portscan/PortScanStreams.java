package portscan;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.LogAndContinueExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * The Kafka Streams peer of `make bench`: the Sentinel rule "High count of connections by client IP on
 * many ports" in the DSL. Tumbling 10-minute event-time windows (TimeGenerated) per (cIP, Computer, sIP),
 * grace 2 minutes, an aggregate of counts and sets in a RocksDB window store, results suppressed until
 * the window closes, and an alert (JSON) for each closed window with portCount >= 30.
 *
 * <pre>
 * java -cp 'portscan-kstreams.jar:lib/*' portscan.PortScanStreams --brokers B --input T --output O \
 *     --app-id A --state-dir D [--threads 1] [--keyed true] [--commit-ms 1000]
 * </pre>
 *
 * Prints a JSON line to stdout every 100 ms: events read, the wall time of the first (epoch ms), the
 * process CPU time at that moment (ns), and the client state.
 */
public final class PortScanStreams {
    static final long BIN_MS = 600_000L;
    static final long GRACE_MS = 120_000L;
    static final int THRESHOLD = 30;

    private static final LongAdder EVENTS = new LongAdder();
    private static final AtomicLong FIRST_MS = new AtomicLong();
    private static final AtomicLong FIRST_CPU_NS = new AtomicLong();

    private PortScanStreams() {}

    /** TimeGenerated of the deserialized record (the source deserializes before extracting). */
    public static final class TimeGeneratedExtractor implements TimestampExtractor {
        @Override
        public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
            Object value = record.value();
            return value instanceof Event e ? e.timeMs : -1; // negative: Streams skips the record
        }
    }

    static Topology topology(String input, String output, boolean keyed) {
        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, Event> events = builder.stream(
                input,
                Consumed.with(Serdes.String(), Event.jsonSerde())
                        .withTimestampExtractor(new TimeGeneratedExtractor()))
                .peek((k, v) -> count());
        KGroupedStream<String, Event> grouped = keyed
                ? events.groupByKey() // keyed cIP|Computer|sIP (`iis-portscan produce`): no repartition
                : events.selectKey((k, v) -> v.key())
                        .groupByKey(Grouped.with("by-window-key", Serdes.String(), Event.binarySerde()));
        grouped.windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMillis(BIN_MS), Duration.ofMillis(GRACE_MS)))
                .aggregate(Agg::new, (key, event, agg) -> agg.add(event), Materialized.with(Serdes.String(), Agg.serde()))
                .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
                .toStream()
                .filter((window, agg) -> agg != null && agg.portCount() >= THRESHOLD)
                .map((window, agg) -> KeyValue.pair(window.key(), alert(window, agg)))
                .to(output, Produced.with(Serdes.String(), Serdes.ByteArray()));
        return builder.build();
    }

    private static void count() {
        EVENTS.increment();
        if (FIRST_MS.get() == 0 && FIRST_MS.compareAndSet(0, System.currentTimeMillis())) {
            FIRST_CPU_NS.set(processCpuNs());
        }
    }

    static long processCpuNs() {
        if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os) {
            return os.getProcessCpuTime();
        }
        return -1;
    }

    private static final JsonFactory JSON = new JsonFactory();

    /** The rule's projection (streams/core/alerts.py's RULE_COLUMNS) plus the window and counts. */
    static byte[] alert(Windowed<String> window, Agg agg) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(4096);
        long start = window.window().start();
        String startText = TimeText.format(start);
        try (JsonGenerator g = JSON.createGenerator(out)) {
            g.writeStartObject();
            g.writeStringField("TimeGenerated", startText);
            g.writeStringField("cIP", agg.cIP);
            g.writeArrayFieldStart("set_sPort");
            for (int i = 0; i < agg.portCount(); i++) g.writeNumber(agg.ports[i]);
            g.writeEndArray();
            for (int i = 0; i < Enrich.N_SETS; i++) {
                if (i == 2) g.writeStringField("Computer", agg.computer);
                if (i == 3) g.writeStringField("sIP", agg.sIP);
                g.writeArrayFieldStart(Enrich.SET_COLUMNS[i]);
                for (String v : agg.sets[i]) g.writeString(v);
                g.writeEndArray();
            }
            g.writeNumberField("ConnectionsCount", agg.count);
            g.writeNumberField("portCount", agg.portCount());
            g.writeStringField("WindowStart", startText);
            g.writeStringField("WindowEnd", TimeText.format(start + BIN_MS));
            g.writeNumberField("DistinctPortCount", agg.distinctPorts());
            g.writeStringField("FirstSeen", TimeText.format(agg.first));
            g.writeStringField("LastSeen", TimeText.format(agg.last));
            g.writeStringField("System", "kafka-streams");
            g.writeEndObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    /** `--enrich-stdin`: for each JSON record on stdin, its nine set values (a JSON array) on stdout, to
     *  check the enrichment against streams/core/enrich.py. */
    static void enrichStdin() throws IOException {
        com.fasterxml.jackson.databind.ObjectMapper mapper = new com.fasterxml.jackson.databind.ObjectMapper();
        java.io.BufferedReader in = new java.io.BufferedReader(
                new java.io.InputStreamReader(System.in, java.nio.charset.StandardCharsets.UTF_8));
        java.io.PrintStream out = new java.io.PrintStream(System.out, true, java.nio.charset.StandardCharsets.UTF_8);
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            Event e = new Event.JsonDeserializer().deserialize("", line.getBytes(java.nio.charset.StandardCharsets.UTF_8));
            out.println(e == null ? "null" : mapper.writeValueAsString(Enrich.values(e)));
        }
    }

    public static void main(String[] argv) throws Exception {
        if (argv.length == 1 && argv[0].equals("--enrich-stdin")) {
            enrichStdin();
            return;
        }
        Map<String, String> args = new HashMap<>(Map.of("--threads", "1", "--keyed", "true", "--commit-ms", "1000"));
        for (int i = 0; i + 1 < argv.length; i += 2) args.put(argv[i], argv[i + 1]);
        for (String required : new String[] {"--brokers", "--input", "--output", "--app-id", "--state-dir"}) {
            if (!args.containsKey(required)) {
                System.err.println("missing " + required);
                System.exit(2);
            }
        }
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args.get("--app-id"));
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args.get("--brokers"));
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, args.get("--threads"));
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, args.get("--commit-ms"));
        props.put(StreamsConfig.STATE_DIR_CONFIG, args.get("--state-dir"));
        props.put(StreamsConfig.DESERIALIZATION_EXCEPTION_HANDLER_CLASS_CONFIG, LogAndContinueExceptionHandler.class);
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        boolean keyed = Boolean.parseBoolean(args.get("--keyed"));
        Topology topology = topology(args.get("--input"), args.get("--output"), keyed);
        KafkaStreams streams = new KafkaStreams(topology, props);
        CountDownLatch stopped = new CountDownLatch(1);
        streams.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            stopped.countDown();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
                    .SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(20));
            stopped.countDown();
        }));
        Thread progress = new Thread(() -> {
            while (stopped.getCount() > 0) {
                System.out.printf(
                        "{\"events\": %d, \"first_ms\": %d, \"first_cpu_ns\": %d, \"state\": \"%s\"}%n",
                        EVENTS.sum(), FIRST_MS.get(), FIRST_CPU_NS.get(), streams.state());
                System.out.flush();
                try {
                    Thread.sleep(100);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }, "progress");
        progress.setDaemon(true);
        streams.start();
        progress.start();
        stopped.await();
    }
}
