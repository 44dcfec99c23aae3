#!/usr/bin/env bash
# Fetches Flyway (flyway-core, flyway-database-postgresql) and the PostgreSQL
# JDBC driver from Maven Central into a cache folder, for the Flyway
# interoperability tests (test/backends/pg/Flyway.test.ts, which find the jars
# through test/harness/flyway.ts). Maven resolves the dependencies; nothing is
# built. Idempotent: a complete cache is left alone. Without java or mvn it says
# so and exits 0; the Flyway tests are then skipped with that reason.
set -euo pipefail

FLYWAY_VERSION=13.12.2
PGJDBC_VERSION=42.7.14
ROOT="${GRAVITON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/graviton}"
CACHE="$ROOT/flyway/$FLYWAY_VERSION"

if [ -f "$CACHE/lib/.complete" ]; then
  echo "install-flyway: Flyway $FLYWAY_VERSION already in $CACHE/lib"
  exit 0
fi
if ! command -v java >/dev/null 2>&1; then
  echo "install-flyway: no java on the PATH: the Flyway tests will be skipped (Flyway $FLYWAY_VERSION needs Java 17+)"
  exit 0
fi
if ! command -v mvn >/dev/null 2>&1; then
  echo "install-flyway: no mvn on the PATH: the Flyway tests will be skipped (install Maven to fetch Flyway's jars)"
  exit 0
fi

started=$(date +%s)
rm -rf "$CACHE/lib"
mkdir -p "$CACHE"
cat > "$CACHE/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>graviton.test</groupId>
  <artifactId>flyway-runner</artifactId>
  <version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.flywaydb</groupId>
      <artifactId>flyway-core</artifactId>
      <version>$FLYWAY_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.flywaydb</groupId>
      <artifactId>flyway-database-postgresql</artifactId>
      <version>$FLYWAY_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.postgresql</groupId>
      <artifactId>postgresql</artifactId>
      <version>$PGJDBC_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
# Maven Central unreachable must not fail the test run: the Flyway tests are
# then skipped, naming the missing jars.
if ! mvn -q -B -f "$CACHE/pom.xml" dependency:copy-dependencies -DoutputDirectory="$CACHE/lib" -DincludeScope=runtime; then
  rm -rf "$CACHE/lib"
  echo "install-flyway: fetching Flyway $FLYWAY_VERSION failed: the Flyway tests will be skipped"
  exit 0
fi
touch "$CACHE/lib/.complete"
echo "install-flyway: Flyway $FLYWAY_VERSION and pgJDBC $PGJDBC_VERSION in $CACHE/lib ($(ls "$CACHE/lib" | wc -l) jars, $(( $(date +%s) - started )) s)"
