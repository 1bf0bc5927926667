package portscan;

import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;

/** The rule's per-request enrichment, as streams/core/enrich.py does it: status texts, Win32 hex and
 *  friendly text, url_decode of the query, every value cut to MAX_VALUE_BYTES (UTF-8). */
final class Enrich {
    static final int N_SETS = 9; // csUserName, decodedUriQuery, sSiteName, csUserAgent, csMethod,
    // scStatusFull, scStatusFull_Friendly, scWin32Status_Hex, scWin32Status_Friendly
    static final String[] SET_COLUMNS = {
        "set_csUserName", "set_decodedUriQuery", "set_sSiteName", "set_csUserAgent", "set_csMethod",
        "set_scStatusFull", "set_scStatusFull_Friendly", "set_scWin32Status_Hex", "set_scWin32Status_Friendly"
    };
    static final int MAX_VALUE_BYTES = 1024;
    static final String MARK = "\u2026[truncated]";
    private static final int MARK_BYTES = MARK.getBytes(StandardCharsets.UTF_8).length;

    static final String STATUS_DEFAULT =
            "See - https://support.microsoft.com/help/943891/the-http-status-code-in-iis-7-0-iis-7-5-and-iis-8-0";
    static final String WIN32_DEFAULT = "See - https://msdn.microsoft.com/library/cc231199.aspx";
    private static final Map<String, String> STATUS = new HashMap<>();
    private static final Map<String, String> WIN32 = new HashMap<>();

    static {
        STATUS.put("401.0", "Access denied.");
        STATUS.put("401.1", "Logon failed.");
        STATUS.put("401.2", "Logon failed due to server configuration.");
        STATUS.put("401.3", "Unauthorized due to ACL on resource.");
        STATUS.put("401.4", "Authorization failed by filter.");
        STATUS.put("401.5", "Authorization failed by ISAPI/CGI application.");
        STATUS.put("403.0", "Forbidden.");
        STATUS.put("403.4", "SSL required.");
        String[][] win32 = {
            {"775", "The referenced account is currently locked out and cannot be logged on to."},
            {"52e", "Logon failure: Unknown user name or bad password."},
            {"532", "Logon failure: The specified account password has expired."},
            {"533", "Logon failure: Account currently disabled."},
            {"2ee2", "The request has timed out."},
            {"0", "The operation completed successfully."},
            {"1", "Incorrect function."},
            {"2", "The system cannot find the file specified."},
            {"3", "The system cannot find the path specified."},
            {"4", "The system cannot open the file."},
            {"5", "Access is denied."},
            {"8009030e", "SEC_E_NO_CREDENTIALS"},
            {"8009030C", "SEC_E_LOGON_DENIED"},
        };
        for (String[] kv : win32) WIN32.put(kv[0].toLowerCase(Locale.ROOT), kv[1]);
    }

    private Enrich() {}

    /** One request's value for each of the nine sets, in SET_COLUMNS order. */
    static String[] values(Event e) {
        String full = e.scStatus + "." + e.scSubStatus;
        Long win32 = toLong(e.scWin32Status);
        String hex = win32 == null ? "" : Long.toHexString(win32);
        return new String[] {
            truncate(e.csUserName),
            truncate(urlDecode(e.csUriQuery)),
            truncate(e.sSiteName),
            truncate(e.csUserAgent),
            truncate(e.csMethod),
            truncate(full),
            STATUS.getOrDefault(full, STATUS_DEFAULT),
            truncate(hex),
            win32Friendly(hex),
        };
    }

    /** Kusto tolong: an ASCII [+-]?[0-9]+ literal within 64 bits, else null. */
    static Long toLong(String t) {
        int n = t.length();
        if (n == 0) return null;
        int i = (t.charAt(0) == '+' || t.charAt(0) == '-') ? 1 : 0;
        if (i == n) return null;
        for (int k = i; k < n; k++) {
            char c = t.charAt(k);
            if (c < '0' || c > '9') return null;
        }
        try {
            return Long.parseLong(t);
        } catch (NumberFormatException ex) {
            return null;
        }
    }

    static String win32Friendly(String hex) {
        for (int k = 0; k < hex.length(); k++) {
            if (hex.charAt(k) > 127) return WIN32_DEFAULT;
        }
        return WIN32.getOrDefault(hex.toLowerCase(Locale.ROOT), WIN32_DEFAULT);
    }

    /** Kusto url_decode (.NET HttpUtility.UrlDecode, UTF-8): '+' is a space; runs of %XX are UTF-8
     *  bytes, runs of %uXXXX UTF-16 code units; malformed escapes stay literal; invalid parts U+FFFD. */
    static String urlDecode(String t) {
        if (t.indexOf('+') >= 0) t = t.replace('+', ' ');
        int pct = t.indexOf('%');
        if (pct < 0) return t;
        StringBuilder out = new StringBuilder(t.length());
        out.append(t, 0, pct);
        int i = pct, n = t.length();
        while (i < n) {
            char c = t.charAt(i);
            if (c == '%' && hexAt(t, i + 1, 2)) {
                ByteBuffer bytes = ByteBuffer.allocate((n - i) / 3 + 1);
                while (i + 2 < n && t.charAt(i) == '%' && hexAt(t, i + 1, 2)) {
                    bytes.put((byte) Integer.parseInt(t, i + 1, i + 3, 16));
                    i += 3;
                }
                bytes.flip();
                out.append(utf8Replace(bytes));
            } else if (c == '%' && i + 1 < n && t.charAt(i + 1) == 'u' && hexAt(t, i + 2, 4)) {
                StringBuilder units = new StringBuilder();
                while (i + 5 < n && t.charAt(i) == '%' && t.charAt(i + 1) == 'u' && hexAt(t, i + 2, 4)) {
                    units.append((char) Integer.parseInt(t, i + 2, i + 6, 16));
                    i += 6;
                }
                for (int k = 0; k < units.length(); k++) { // lone surrogates become U+FFFD
                    char u = units.charAt(k);
                    if (Character.isHighSurrogate(u) && k + 1 < units.length()
                            && Character.isLowSurrogate(units.charAt(k + 1))) {
                        out.append(u).append(units.charAt(++k));
                    } else if (Character.isSurrogate(u)) {
                        out.append('\uFFFD');
                    } else {
                        out.append(u);
                    }
                }
            } else {
                out.append(c);
                i++;
            }
        }
        return out.toString();
    }

    private static boolean hexAt(String t, int at, int count) {
        if (at + count > t.length()) return false;
        for (int k = at; k < at + count; k++) {
            if (Character.digit(t.charAt(k), 16) < 0 || t.charAt(k) > 127) return false;
        }
        return true;
    }

    private static String utf8Replace(ByteBuffer bytes) {
        CharsetDecoder dec = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPLACE)
                .onUnmappableCharacter(CodingErrorAction.REPLACE);
        try {
            CharBuffer chars = dec.decode(bytes);
            return chars.toString();
        } catch (CharacterCodingException ex) {
            throw new IllegalStateException(ex);
        }
    }

    /** The value if its UTF-8 form fits MAX_VALUE_BYTES, else its longest whole-character prefix that
     *  fits together with MARK, then MARK (enrich.truncate). */
    static String truncate(String t) {
        if (t.length() * 4 <= MAX_VALUE_BYTES) return t;
        int total = 0, cut = -1, i = 0, n = t.length();
        int budget = MAX_VALUE_BYTES - MARK_BYTES;
        while (i < n) {
            int cp = t.codePointAt(i);
            int len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
            if (cut < 0 && total + len > budget) cut = i;
            total += len;
            i += Character.charCount(cp);
        }
        if (total <= MAX_VALUE_BYTES) return t;
        return t.substring(0, cut) + MARK;
    }

    /** Strings in code-point order, as Python sorts them (String.compareTo is UTF-16 order). */
    static final Comparator<String> CODE_POINT_ORDER = (a, b) -> {
        int n = Math.min(a.length(), b.length());
        for (int k = 0; k < n; k++) {
            char x = a.charAt(k), y = b.charAt(k);
            if (x != y) {
                if (x >= 0xD800 && y >= 0xD800) { // fix-up: surrogates sort after U+E000..U+FFFF
                    x += x >= 0xE000 ? -0x800 : 0x2000;
                    y += y >= 0xE000 ? -0x800 : 0x2000;
                }
                return x - y;
            }
        }
        return a.length() - b.length();
    };
}
