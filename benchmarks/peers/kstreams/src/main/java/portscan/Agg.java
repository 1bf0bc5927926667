package portscan;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

/** One window's aggregate: ConnectionsCount, first/last time, every distinct port (exact, like
 *  DistinctPortCount) and the nine string sets, each the CAP smallest values (streams/core/aggregate.py). */
public final class Agg {
    static final int CAP = 128;
    private static final String[] NONE = new String[0];

    String cIP = "", computer = "", sIP = "";
    int count;
    long first = Long.MAX_VALUE, last = -1;
    int[] ports = new int[0]; // sorted, distinct
    final String[][] sets = new String[Enrich.N_SETS][]; // each sorted (code points), distinct, <= CAP

    Agg() {
        Arrays.fill(sets, NONE);
    }

    Agg add(Event e) {
        if (count == 0) {
            cIP = e.cIP;
            computer = e.computer;
            sIP = e.sIP;
        }
        count++;
        first = Math.min(first, e.timeMs);
        last = Math.max(last, e.timeMs);
        if (e.sPort != null) {
            int at = Arrays.binarySearch(ports, e.sPort);
            if (at < 0) {
                int pos = -at - 1;
                int[] grown = new int[ports.length + 1];
                System.arraycopy(ports, 0, grown, 0, pos);
                grown[pos] = e.sPort;
                System.arraycopy(ports, pos, grown, pos + 1, ports.length - pos);
                ports = grown;
            }
        }
        String[] values = Enrich.values(e);
        for (int i = 0; i < values.length; i++) sets[i] = insert(sets[i], values[i]);
        return this;
    }

    /** The set with `v` added, kept to its CAP smallest. */
    private static String[] insert(String[] set, String v) {
        int at = Arrays.binarySearch(set, v, Enrich.CODE_POINT_ORDER);
        if (at >= 0) return set;
        int pos = -at - 1;
        if (pos >= CAP) return set; // larger than all of a full set's values
        int size = Math.min(set.length + 1, CAP);
        String[] grown = new String[size];
        System.arraycopy(set, 0, grown, 0, pos);
        grown[pos] = v;
        System.arraycopy(set, pos, grown, pos + 1, size - pos - 1);
        return grown;
    }

    int distinctPorts() {
        return ports.length;
    }

    /** portCount = arraylength(set_sPort): distinct ports capped like makeset. */
    int portCount() {
        return Math.min(ports.length, CAP);
    }

    // ------------------------------------------------------------------------------------ serde

    public static final class Ser implements Serializer<Agg> {
        @Override
        public byte[] serialize(String topic, Agg a) {
            if (a == null) return null;
            byte[] k1 = a.cIP.getBytes(StandardCharsets.UTF_8);
            byte[] k2 = a.computer.getBytes(StandardCharsets.UTF_8);
            byte[] k3 = a.sIP.getBytes(StandardCharsets.UTF_8);
            byte[][][] enc = new byte[Enrich.N_SETS][][];
            int size = 4 + 8 + 8 + 12 + k1.length + k2.length + k3.length + 4 + 2 * a.ports.length;
            for (int i = 0; i < enc.length; i++) {
                String[] set = a.sets[i];
                enc[i] = new byte[set.length][];
                size += 4;
                for (int j = 0; j < set.length; j++) {
                    enc[i][j] = set[j].getBytes(StandardCharsets.UTF_8);
                    size += 4 + enc[i][j].length;
                }
            }
            ByteBuffer buf = ByteBuffer.allocate(size);
            buf.putInt(a.count).putLong(a.first).putLong(a.last);
            buf.putInt(k1.length).put(k1).putInt(k2.length).put(k2).putInt(k3.length).put(k3);
            buf.putInt(a.ports.length);
            for (int p : a.ports) buf.putChar((char) p);
            for (byte[][] set : enc) {
                buf.putInt(set.length);
                for (byte[] v : set) buf.putInt(v.length).put(v);
            }
            return buf.array();
        }
    }

    public static final class De implements Deserializer<Agg> {
        @Override
        public Agg deserialize(String topic, byte[] data) {
            if (data == null) return null;
            ByteBuffer buf = ByteBuffer.wrap(data);
            Agg a = new Agg();
            a.count = buf.getInt();
            a.first = buf.getLong();
            a.last = buf.getLong();
            a.cIP = Event.str(buf);
            a.computer = Event.str(buf);
            a.sIP = Event.str(buf);
            a.ports = new int[buf.getInt()];
            for (int i = 0; i < a.ports.length; i++) a.ports[i] = buf.getChar();
            for (int i = 0; i < Enrich.N_SETS; i++) {
                String[] set = new String[buf.getInt()];
                for (int j = 0; j < set.length; j++) set[j] = Event.str(buf);
                a.sets[i] = set;
            }
            return a;
        }
    }

    static Serde<Agg> serde() {
        return Serdes.serdeFrom(new Ser(), new De());
    }
}
