/**
 * `runtime_metrics`: process and Deno runtime figures, as Go's client
 * exports process_* and go_*.
 *
 * @module
 */

import process from "node:process";
import { type MetricFamily, registerCollector } from "../../server/metrics.ts";

const processStart = performance.timeOrigin / 1000;

/** `runtime_metrics`: process and Deno runtime figures (Go's client exports process_* and go_*). */
function runtimeMetrics(): MetricFamily[] {
  const mem = Deno.memoryUsage();
  const cpu = process.cpuUsage();
  const families: MetricFamily[] = [
    {
      name: "process_cpu_seconds_total",
      help: "Total user and system CPU time spent in seconds.",
      type: "counter",
      samples: [{ value: (cpu.user + cpu.system) / 1e6 }],
    },
    {
      name: "process_resident_memory_bytes",
      help: "Resident memory size in bytes.",
      type: "gauge",
      samples: [{ value: mem.rss }],
    },
    {
      name: "process_start_time_seconds",
      help: "Start time of the process since unix epoch in seconds.",
      type: "gauge",
      samples: [{ value: processStart }],
    },
    {
      name: "deno_memory_heap_used_bytes",
      help: "V8 heap bytes in use.",
      type: "gauge",
      samples: [{ value: mem.heapUsed }],
    },
    {
      name: "deno_memory_heap_total_bytes",
      help: "V8 heap bytes allocated.",
      type: "gauge",
      samples: [{ value: mem.heapTotal }],
    },
    {
      name: "deno_memory_external_bytes",
      help: "Bytes of memory held outside the V8 heap (buffers).",
      type: "gauge",
      samples: [{ value: mem.external }],
    },
  ];
  try {
    let fds = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) fds++;
    families.push({
      name: "process_open_fds",
      help: "Number of open file descriptors.",
      type: "gauge",
      samples: [{ value: fds }],
    });
  } catch {
    // No /proc (macOS) or no read permission: leave it out.
  }
  return families;
}

/**
 * Registers the runtime collector while a configuration holds it (a
 * resource pool entry: one per process, however many blocks ask).
 */
export function runtimeCollector(): { close(): void } {
  const uninstall = registerCollector(runtimeMetrics);
  return { close: uninstall };
}
