package portscan;

import java.time.DateTimeException;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.ZoneOffset;

/** ISO-8601 in and out as streams/core/timefmt.py: epoch ms UTC, sub-millisecond digits floored. */
final class TimeText {
    static final long MAX_MS = 253_402_300_799_999L; // 9999-12-31T23:59:59.999Z

    private TimeText() {}

    /** YYYY-MM-DD[T ]HH:MM[:SS[.fraction]] then Z, +HH:MM, +HHMM, +HH or nothing; -1 when invalid. */
    static long parse(String t) {
        int n = t.length();
        if (n < 16) return -1;
        int y = digits(t, 0, 4), mo = digits(t, 5, 2), d = digits(t, 8, 2);
        int h = digits(t, 11, 2), mi = digits(t, 14, 2);
        char sep = t.charAt(10);
        if (y < 0 || mo < 0 || d < 0 || h < 0 || mi < 0 || t.charAt(4) != '-' || t.charAt(7) != '-'
                || (sep != 'T' && sep != 't' && sep != ' ') || t.charAt(13) != ':') {
            return -1;
        }
        int i = 16, sec = 0, ms = 0;
        if (i < n && t.charAt(i) == ':') {
            sec = digits(t, i + 1, 2);
            if (sec < 0) return -1;
            i += 3;
            if (i < n && (t.charAt(i) == '.' || t.charAt(i) == ',')) {
                int j = i + 1;
                int scale = 100;
                while (j < n && isDigit(t.charAt(j))) {
                    ms += (t.charAt(j) - '0') * scale;
                    scale /= 10;
                    j++;
                }
                if (j == i + 1) return -1;
                i = j;
            }
        }
        long offsetMs = 0;
        if (i < n) {
            char c = t.charAt(i);
            if ((c == 'Z' || c == 'z') && i == n - 1) {
                i++;
            } else if (c == '+' || c == '-') {
                int oh = digits(t, i + 1, 2), om = 0;
                if (oh < 0) return -1;
                int j = i + 3;
                if (j < n && t.charAt(j) == ':') j++;
                if (j < n) {
                    om = digits(t, j, 2);
                    if (om < 0 || j + 2 != n) return -1;
                } else if (j != n || t.charAt(j - 1) == ':') {
                    return -1;
                }
                if (oh > 23 || om > 59) return -1;
                offsetMs = (oh * 60L + om) * 60_000L * (c == '+' ? 1 : -1);
                i = n;
            } else {
                return -1;
            }
        }
        if (i != n || h > 23 || mi > 59 || sec > 59) return -1;
        long day;
        try {
            day = LocalDate.of(y, mo, d).toEpochDay();
        } catch (DateTimeException e) {
            return -1;
        }
        long out = day * 86_400_000L + ((h * 60L + mi) * 60L + sec) * 1000L + ms - offsetMs;
        return out < 0 || out > MAX_MS ? -1 : out;
    }

    private static boolean isDigit(char c) {
        return c >= '0' && c <= '9';
    }

    private static int digits(String t, int at, int count) {
        if (at + count > t.length()) return -1;
        int v = 0;
        for (int k = at; k < at + count; k++) {
            char c = t.charAt(k);
            if (!isDigit(c)) return -1;
            v = v * 10 + (c - '0');
        }
        return v;
    }

    /** Epoch ms as YYYY-MM-DDTHH:MM:SS.fffZ. */
    static String format(long ms) {
        LocalDateTime dt = LocalDateTime.ofEpochSecond(Math.floorDiv(ms, 1000), 0, ZoneOffset.UTC);
        return String.format(
                "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                dt.getYear(), dt.getMonthValue(), dt.getDayOfMonth(), dt.getHour(), dt.getMinute(),
                dt.getSecond(), Math.floorMod(ms, 1000));
    }
}
