/*
 * Runs one Flyway command through Flyway's Java API, for the interoperability
 * tests (test/backends/pg/Flyway.test.ts, through test/harness/flyway.ts).
 *
 *   java -cp <jars> FlywayRunner <commands> <jdbc-url> <user> <password> <schema|""> <folder> [key=value ...]
 *
 * <commands> is a comma-separated list of migrate, validate, info and baseline,
 * run in that order in one JVM (each JVM start costs seconds).
 * Extra arguments are Flyway settings without the "flyway." prefix (e.g.
 * baselineVersion=3). Flyway's own log goes to stdout as usual;  the results, by
 * command, are the last line, "FLYWAY-RESULT <json>" (or "FLYWAY-ERROR <message>", exit 1).
 */
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.flywaydb.core.Flyway;
import org.flywaydb.core.api.MigrationInfo;
import org.flywaydb.core.api.configuration.FluentConfiguration;
import org.flywaydb.core.api.output.MigrateResult;
import org.flywaydb.core.api.output.ValidateResult;

public class FlywayRunner {
    static String json(Object value) {
        if (value == null) return "null";
        if (value instanceof Number || value instanceof Boolean) return value.toString();
        if (value instanceof List<?> list) {
            List<String> items = new ArrayList<>();
            for (Object item : list) items.add(json(item));
            return "[" + String.join(",", items) + "]";
        }
        if (value instanceof Map<?, ?> map) {
            List<String> items = new ArrayList<>();
            for (Map.Entry<?, ?> e : map.entrySet()) items.add(json(e.getKey().toString()) + ":" + json(e.getValue()));
            return "{" + String.join(",", items) + "}";
        }
        StringBuilder out = new StringBuilder("\"");
        for (char c : value.toString().toCharArray()) {
            if (c == '"' || c == '\\') out.append('\\').append(c);
            else if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
            else out.append(c);
        }
        return out.append('"').toString();
    }

    public static void main(String[] args) {
        try {
            Map<String, String> settings = new HashMap<>();
            for (int i = 6; i < args.length; i++) {
                String[] kv = args[i].split("=", 2);
                settings.put("flyway." + kv[0], kv[1]);
            }
            FluentConfiguration config = Flyway.configure()
                .dataSource(args[1], args[2], args[3])
                .locations("filesystem:" + args[5])
                .configuration(settings);
            if (!args[4].isEmpty()) config = config.schemas(args[4]);
            Flyway flyway = config.load();
            Map<String, Object> results = new HashMap<>();
            for (String command : args[0].split(",")) {
                Map<String, Object> result = new HashMap<>();
                switch (command) {
                    case "migrate" -> {
                        MigrateResult r = flyway.migrate();
                        result.put("executed", r.migrationsExecuted);
                        result.put("initial", r.initialSchemaVersion);
                        result.put("target", r.targetSchemaVersion);
                    }
                    case "validate" -> {
                        ValidateResult r = flyway.validateWithResult();
                        result.put("valid", r.validationSuccessful);
                        result.put("errors", r.validationSuccessful ? "" : r.getAllErrorMessages());
                    }
                    case "info" -> {
                        List<Object> rows = new ArrayList<>();
                        for (MigrationInfo m : flyway.info().all()) {
                            Map<String, Object> row = new HashMap<>();
                            row.put("version", m.getVersion() == null ? null : m.getVersion().toString());
                            row.put("description", m.getDescription());
                            row.put("type", m.getType().name());
                            row.put("script", m.getScript());
                            row.put("checksum", m.getChecksum());
                            row.put("state", m.getState().name());
                            rows.add(row);
                        }
                        result.put("migrations", rows);
                    }
                    case "baseline" -> flyway.baseline();
                    default -> throw new IllegalArgumentException("unknown command " + command);
                }
                results.put(command, result);
            }
            System.out.println("FLYWAY-RESULT " + json(results));
        } catch (Exception e) {
            System.out.println("FLYWAY-ERROR " + e.getMessage().replace('\n', ' '));
            System.exit(1);
        }
    }
}
