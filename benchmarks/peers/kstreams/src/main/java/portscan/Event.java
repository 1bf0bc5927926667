package portscan;

import com.fasterxml.jackson.annotation.JsonIgnore;
import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectReader;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

/** One W3CIISLog request: the 13 columns the rule reads (streams/core/records.py's IISEvent). */
@JsonIgnoreProperties(ignoreUnknown = true)
public final class Event {
    static final int MAX_KEY_CHARS = 256; // streams/core/parse.py: a longer group-key value is rejected

    @JsonProperty("TimeGenerated") public String timeGenerated;
    @JsonProperty("cIP") public String cIP;
    @JsonProperty("Computer") public String computer;
    @JsonProperty("sIP") public String sIP;
    @JsonProperty("sPort") public Integer sPort;
    @JsonProperty("csMethod") public String csMethod;
    @JsonProperty("csUriQuery") public String csUriQuery;
    @JsonProperty("csUserName") public String csUserName;
    @JsonProperty("sSiteName") public String sSiteName;
    @JsonProperty("csUserAgent") public String csUserAgent;
    @JsonProperty("scStatus") public String scStatus;
    @JsonProperty("scSubStatus") public String scSubStatus;
    @JsonProperty("scWin32Status") public String scWin32Status;

    @JsonIgnore public long timeMs = -1;

    /** The group key, as `iis-portscan produce` keys its records. */
    public String key() {
        return cIP + "|" + computer + "|" + sIP;
    }

    /** Fill defaults and check what parse.py checks; false when the record must be skipped. */
    boolean normalise() {
        if (cIP == null || computer == null || sIP == null) return false;
        if (cIP.length() > MAX_KEY_CHARS || computer.length() > MAX_KEY_CHARS || sIP.length() > MAX_KEY_CHARS) {
            return false;
        }
        if (sPort != null && (sPort < 0 || sPort > 65535)) return false;
        timeMs = timeGenerated == null ? -1 : TimeText.parse(timeGenerated);
        if (timeMs < 0) return false;
        csMethod = orEmpty(csMethod);
        csUriQuery = orEmpty(csUriQuery);
        csUserName = orEmpty(csUserName);
        sSiteName = orEmpty(sSiteName);
        csUserAgent = orEmpty(csUserAgent);
        scStatus = orEmpty(scStatus);
        scSubStatus = orEmpty(scSubStatus);
        scWin32Status = orEmpty(scWin32Status);
        return true;
    }

    private static String orEmpty(String s) {
        return s == null ? "" : s;
    }

    // ------------------------------------------------------------------------------------ serdes

    private static final ObjectReader READER = new ObjectMapper().readerFor(Event.class);

    /** The input topic's values: JSON (Jackson databind), invalid records as null (then skipped). */
    public static final class JsonDeserializer implements Deserializer<Event> {
        @Override
        public Event deserialize(String topic, byte[] data) {
            if (data == null) return null;
            try {
                Event e = READER.readValue(data);
                return e.normalise() ? e : null;
            } catch (java.io.IOException | RuntimeException ex) {
                return null;
            }
        }
    }

    /** The repartition topic's values (unkeyed input): a compact binary record. */
    public static final class BinarySerializer implements Serializer<Event> {
        @Override
        public byte[] serialize(String topic, Event e) {
            if (e == null) return null;
            byte[][] parts = {
                utf8(e.cIP), utf8(e.computer), utf8(e.sIP), utf8(e.csMethod), utf8(e.csUriQuery),
                utf8(e.csUserName), utf8(e.sSiteName), utf8(e.csUserAgent), utf8(e.scStatus),
                utf8(e.scSubStatus), utf8(e.scWin32Status)
            };
            int size = 8 + 4;
            for (byte[] p : parts) size += 4 + p.length;
            ByteBuffer buf = ByteBuffer.allocate(size);
            buf.putLong(e.timeMs).putInt(e.sPort == null ? -1 : e.sPort);
            for (byte[] p : parts) buf.putInt(p.length).put(p);
            return buf.array();
        }
    }

    public static final class BinaryDeserializer implements Deserializer<Event> {
        @Override
        public Event deserialize(String topic, byte[] data) {
            if (data == null) return null;
            ByteBuffer buf = ByteBuffer.wrap(data);
            Event e = new Event();
            e.timeMs = buf.getLong();
            int port = buf.getInt();
            e.sPort = port < 0 ? null : port;
            e.cIP = str(buf);
            e.computer = str(buf);
            e.sIP = str(buf);
            e.csMethod = str(buf);
            e.csUriQuery = str(buf);
            e.csUserName = str(buf);
            e.sSiteName = str(buf);
            e.csUserAgent = str(buf);
            e.scStatus = str(buf);
            e.scSubStatus = str(buf);
            e.scWin32Status = str(buf);
            return e;
        }
    }

    static Serde<Event> jsonSerde() {
        return Serdes.serdeFrom(new BinarySerializer(), new JsonDeserializer());
    }

    static Serde<Event> binarySerde() {
        return Serdes.serdeFrom(new BinarySerializer(), new BinaryDeserializer());
    }

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String str(ByteBuffer buf) {
        int n = buf.getInt();
        String s = new String(buf.array(), buf.arrayOffset() + buf.position(), n, StandardCharsets.UTF_8);
        buf.position(buf.position() + n);
        return s;
    }
}
