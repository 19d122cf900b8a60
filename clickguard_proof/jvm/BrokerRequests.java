import com.sun.tools.attach.VirtualMachine;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import javax.management.MBeanServerConnection;
import javax.management.ObjectName;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

/**
 * Requests per second by type that each local Kafka broker served over a window, read from its
 * RequestMetrics MBeans through the attach API (no JMX port needed): which clients keep an idle
 * cluster busy (docs/performance.md, fifteenth pass). Run from the repository root, as the
 * brokers' user, on the brokers' pids (first field of $CLICKGUARD_HOME/kafka-N/pid):
 *
 *   java clickguard_proof/jvm/BrokerRequests.java PID [PID...] SECONDS
 */
public class BrokerRequests {
    static Map<String, Long> counts(MBeanServerConnection c) throws Exception {
        Map<String, Long> m = new TreeMap<>();
        ObjectName all = new ObjectName("kafka.network:type=RequestMetrics,name=RequestsPerSec,*");
        for (ObjectName n : c.queryNames(all, null)) {  // one MBean per request type and version
            m.merge(n.getKeyProperty("request"), (Long) c.getAttribute(n, "Count"), Long::sum);
        }
        return m;
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: java BrokerRequests.java PID [PID...] SECONDS");
            System.exit(2);
        }
        int seconds = Integer.parseInt(args[args.length - 1]);
        List<MBeanServerConnection> brokers = new ArrayList<>();
        for (int i = 0; i < args.length - 1; i++) {
            String url = VirtualMachine.attach(args[i]).startLocalManagementAgent();
            brokers.add(JMXConnectorFactory.connect(new JMXServiceURL(url)).getMBeanServerConnection());
        }
        List<Map<String, Long>> before = new ArrayList<>();
        for (MBeanServerConnection c : brokers) before.add(counts(c));
        Thread.sleep(seconds * 1000L);
        for (int i = 0; i < brokers.size(); i++) {
            System.out.printf("pid %s, requests/s over %d s%n", args[i], seconds);
            for (Map.Entry<String, Long> e : counts(brokers.get(i)).entrySet()) {
                long n = e.getValue() - before.get(i).getOrDefault(e.getKey(), 0L);
                if (n > 0) System.out.printf("  %-28s %7.2f%n", e.getKey(), n / (double) seconds);
            }
        }
    }
}
