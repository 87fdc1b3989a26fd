// A contender of `ferry bench -slow`: Confluent's Parallel Consumer with KEY ordering consuming a
// topic with a handler that sleeps per message, as ferry's slow-handler cases do.
//
//   java ParallelConsumerBench BROKERS TOPIC GROUP MESSAGES CONCURRENCY WAIT_MS TAIL_MS
//
// Every message sleeps WAIT_MS, or TAIL_MS when TAIL_MS > 0 and its offset ends in 99 (1 %).
// Prints one line: "first_ms last_ms", milliseconds from start to the first message handed to the
// handler and to the last message processed.
import io.confluent.parallelconsumer.ParallelConsumerOptions;
import io.confluent.parallelconsumer.ParallelStreamProcessor;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.StringDeserializer;

public class ParallelConsumerBench {
  public static void main(String[] args) throws Exception {
    String brokers = args[0], topic = args[1], group = args[2];
    long messages = Long.parseLong(args[3]);
    int concurrency = Integer.parseInt(args[4]);
    long waitMs = Long.parseLong(args[5]), tailMs = Long.parseLong(args[6]);

    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());

    long start = System.nanoTime();
    ParallelConsumerOptions<String, String> options = ParallelConsumerOptions.<String, String>builder()
        .ordering(ParallelConsumerOptions.ProcessingOrder.KEY)
        .maxConcurrency(concurrency)
        .consumer(new KafkaConsumer<>(props))
        .commitMode(ParallelConsumerOptions.CommitMode.PERIODIC_CONSUMER_SYNC)
        .build();
    ParallelStreamProcessor<String, String> pc = ParallelStreamProcessor.createEosStreamProcessor(options);
    AtomicLong done = new AtomicLong(), first = new AtomicLong(), last = new AtomicLong();
    CountDownLatch all = new CountDownLatch(1);
    pc.subscribe(List.of(topic));
    pc.poll(ctx -> {
      ConsumerRecord<String, String> r = ctx.getSingleConsumerRecord();
      first.compareAndSet(0, System.nanoTime() - start);
      try {
        Thread.sleep(tailMs > 0 && r.offset() % 100 == 99 ? tailMs : waitMs);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      if (done.incrementAndGet() == messages) {
        last.set(System.nanoTime() - start);
        all.countDown();
      }
    });
    if (!all.await(10, TimeUnit.MINUTES)) {
      System.err.println("Parallel Consumer processed " + done.get() + " of " + messages);
      System.exit(1);
    }
    System.out.println(TimeUnit.NANOSECONDS.toMillis(first.get()) + " " + TimeUnit.NANOSECONDS.toMillis(last.get()));
    System.out.flush();
    pc.closeDontDrainFirst();
    System.exit(0);
  }
}
