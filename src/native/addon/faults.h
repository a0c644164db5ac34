/* Fault codes shared by tcp_relay.c and udp_relay.c, as src/native/fault-codes.ts encodes them:
 * FAULT_REC doubles per fault: type, stream (0 upstream = client->backend, 1 downstream), toxicity,
 * a0, a1, a2 (attributes in the order of src/config/faults.ts's catalogue), id (a 32-bit hash of
 * the whole fault: a fault kept across a change keeps its id, so a flow keeps its roll and state). */
#ifndef SGEMU_FAULTS_H
#define SGEMU_FAULTS_H
#define FAULT_REC 7
#define FAULT_MAX 16
enum {
  FT_LATENCY = 1,      /* latency ms, jitter ms */
  FT_BANDWIDTH = 2,    /* rate KB/s */
  FT_SLOW_CLOSE = 3,   /* delay ms */
  FT_TIMEOUT = 4,      /* timeout ms */
  FT_RESET_PEER = 5,   /* timeout ms */
  FT_SLICER = 6,       /* average_size, size_variation, delay us */
  FT_LIMIT_DATA = 7,   /* bytes */
  FT_LOSS = 8,         /* probability */
  FT_DUPLICATE = 9,    /* probability */
  FT_REORDER = 10,     /* probability, gap ms */
};
#endif
