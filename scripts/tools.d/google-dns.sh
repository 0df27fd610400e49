# shellcheck shell=bash
# Google's in-memory Cloud DNS v1 server (com.google.cloud.dns.testing.LocalDnsHelper, shipped
# in the main jar of com.google.cloud:google-cloud-dns up to 0.7.0; later releases dropped it)
# for tests/google_api.rs and the google provider's contract tests. Maven resolves the jar and
# its dependencies from Maven Central into its own directory of the cache; javac compiles
# tests/support/google-dns/LocalDnsServer.java, the launcher that binds 127.0.0.1 only (see
# there why); "$BIN/google-dns-local" runs it. Sourced by scripts/tools.sh: $CACHE, $BIN,
# $TOOLS_DIR, log and debian_packages come from there.
GOOGLE_DNS_VERSION=${GOOGLE_DNS_VERSION:-0.7.0}

install_google_dns() {
  local root="$CACHE/java/google-cloud-dns-$GOOGLE_DNS_VERSION"
  local launcher="$TOOLS_DIR/../tests/support/google-dns/LocalDnsServer.java"
  local sum tmp wrapper
  # Java 17 and Maven from Debian where they are missing.
  command -v java >/dev/null && command -v javac >/dev/null && command -v mvn >/dev/null ||
    debian_packages openjdk-17-jdk-headless maven
  command -v java >/dev/null && command -v javac >/dev/null && command -v mvn >/dev/null ||
    { log "error: google-dns-local needs java, javac and mvn (Java 17, Maven 3)"; return 1; }
  if [ ! -s "$root/lib/google-cloud-dns-$GOOGLE_DNS_VERSION.jar" ]; then
    log "resolving com.google.cloud:google-cloud-dns:$GOOGLE_DNS_VERSION and its dependencies with Maven"
    # A half-done resolution never takes the place of a good one.
    tmp="$root.tmp.$$"
    rm -rf "$tmp" && mkdir -p "$tmp"
    cat > "$tmp/pom.xml" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>mailsec.local</groupId>
  <artifactId>google-dns-local</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>com.google.cloud</groupId>
      <artifactId>google-cloud-dns</artifactId>
      <version>$GOOGLE_DNS_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
    # Maven's output is shown only when it fails.
    if ! (cd "$tmp" && mvn -B -q -Dstyle.color=never dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp/lib") > "$tmp/mvn.log" 2>&1 ||
      [ ! -s "$tmp/lib/google-cloud-dns-$GOOGLE_DNS_VERSION.jar" ]; then
      cat "$tmp/mvn.log" >&2
      log "error: Maven did not resolve google-cloud-dns $GOOGLE_DNS_VERSION"
      rm -rf "$tmp"
      return 1
    fi
    rm -f "$tmp/mvn.log"
    mkdir -p "$(dirname "$root")"
    rm -rf "$root" && mv "$tmp" "$root"
  fi
  # The launcher is compiled again whenever its source changes.
  sum=$(sha256sum "$launcher" | cut -d' ' -f1)
  if [ "$(cat "$root/classes/.source-sha256" 2>/dev/null)" != "$sum" ]; then
    log "compiling the LocalDnsHelper launcher"
    tmp="$root/classes.tmp.$$"
    rm -rf "$tmp" && mkdir -p "$tmp"
    javac -nowarn -d "$tmp" -cp "$root/lib/*" "$launcher" >&2 ||
      { log "error: javac failed"; rm -rf "$tmp"; return 1; }
    echo "$sum" > "$tmp/.source-sha256"
    rm -rf "$root/classes" && mv "$tmp" "$root/classes"
  fi
  wrapper=$(printf '%s\n' '#!/bin/sh' \
    "# google-cloud-dns $GOOGLE_DNS_VERSION LocalDnsHelper on 127.0.0.1 (scripts/tools.d/google-dns.sh)" \
    "# Usage: google-dns-local [delay-ms]; prints \"listening on 127.0.0.1:<port>\"." \
    "exec java -Xss1m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp \"$root/classes:$root/lib/*\" LocalDnsServer \"\$@\"")
  # Rewritten only when it differs (another version, another cache).
  if [ ! -x "$BIN/google-dns-local" ] || [ "$(cat "$BIN/google-dns-local")" != "$wrapper" ]; then
    printf '%s\n' "$wrapper" > "$BIN/google-dns-local.tmp.$$"
    chmod 0755 "$BIN/google-dns-local.tmp.$$"
    mv "$BIN/google-dns-local.tmp.$$" "$BIN/google-dns-local"
  fi
}

install_google_dns
