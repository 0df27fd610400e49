// Runs Google's in-memory Cloud DNS v1 server, com.google.cloud.dns.testing.LocalDnsHelper
// (google-cloud-dns 0.7.0, the last release that ships it), on 127.0.0.1 only.
//
// LocalDnsHelper's only constructor binds the wildcard address (new InetSocketAddress(0)), which
// the tests must never do. So this launcher makes the instance without running that
// constructor (Unsafe.allocateInstance) and then does by reflection what the constructor does
// (javap -c LocalDnsHelper shows it), with a loopback address in place of the wildcard:
//   projects    = new ConcurrentSkipListMap<>()
//   delayChange = the delay (ms) before a change is applied
//   server      = HttpServer.create(<address>, 0), a cached thread pool as its executor, and one
//                 context "/" handled by a new LocalDnsHelper.RequestHandler(helper)
//   port        = the port the server got
// Then it starts the server, prints "listening on 127.0.0.1:<port>" and serves until killed.
//
// Usage: LocalDnsServer [delay-ms]   (0 when absent: changes are done when created)
// Installed by scripts/tools.d/google-dns.sh as "google-dns-local".

import com.sun.net.httpserver.HttpHandler;
import com.sun.net.httpserver.HttpServer;
import java.lang.reflect.Constructor;
import java.lang.reflect.Field;
import java.net.InetSocketAddress;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.Executors;

public final class LocalDnsServer {
  private static final String HELPER = "com.google.cloud.dns.testing.LocalDnsHelper";

  public static void main(String[] args) throws Exception {
    long delay = args.length > 0 ? Long.parseLong(args[0]) : 0L;
    Class<?> helperClass = Class.forName(HELPER);

    Field theUnsafe = Class.forName("sun.misc.Unsafe").getDeclaredField("theUnsafe");
    theUnsafe.setAccessible(true);
    Object unsafe = theUnsafe.get(null);
    Object helper =
        unsafe.getClass().getMethod("allocateInstance", Class.class).invoke(unsafe, helperClass);

    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    server.setExecutor(Executors.newCachedThreadPool());
    Class<?> handlerClass = Class.forName(HELPER + "$RequestHandler");
    Constructor<?> handlerConstructor = handlerClass.getDeclaredConstructor(helperClass);
    handlerConstructor.setAccessible(true);
    server.createContext("/", (HttpHandler) handlerConstructor.newInstance(helper));

    set(helperClass, helper, "projects", new ConcurrentSkipListMap<String, Object>());
    set(helperClass, helper, "delayChange", delay);
    set(helperClass, helper, "server", server);
    set(helperClass, helper, "port", server.getAddress().getPort());

    helperClass.getMethod("start").invoke(helper);
    System.out.println("listening on 127.0.0.1:" + server.getAddress().getPort());
    System.out.flush();
    Thread.currentThread().join();
  }

  private static void set(Class<?> type, Object target, String name, Object value)
      throws ReflectiveOperationException {
    Field field = type.getDeclaredField(name);
    field.setAccessible(true);
    field.set(target, value);
  }
}
