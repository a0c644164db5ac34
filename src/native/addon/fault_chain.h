/*
 * The TCP fault chain (Toxiproxy's toxics) as a pure computation: a chunk read from one side at
 * time t goes through the direction's active faults in order and comes out as pieces of the chunk,
 * each with the time it may be written, plus what the chain decided about the connection (close it
 * at a time, reset it at a time, drop what follows). No I/O, no locks: tcp_relay.c owns the queue,
 * the timers and the sockets (native-notes/faults.md).
 *
 * Semantics, after Shopify/toxiproxy toxics/NAME.go (times in µs here, attributes as the API gives):
 *   latency     each chunk leaves at max(previous, arrival + latency ± jitter): order kept
 *   bandwidth   rate KB/s (1000 B): a piece of n bytes takes n/rate ms after the previous one;
 *               chunks are split into rate*100-byte pieces (100 ms each); rate 0 holds the data
 *   slicer      chunk cut into slices of average_size ± size_variation (halving, as Toxiproxy),
 *               delay µs between slices
 *   limit_data  passes `bytes` in total, then closes the connection (at the last byte's time)
 *   timeout     drops the data; closes the connection `timeout` ms after the last input (0: never)
 *   reset_peer  drops the data; resets the connection `timeout` ms after the first input
 *   slow_close  the EOF (FIN) leaves `delay` ms late
 *   An EOF travels the chain like an empty chunk: after every earlier piece, never delayed by
 *   latency, bandwidth or slicer themselves (as Toxiproxy closes a stub once its input ends).
 */
#ifndef SGEMU_FAULT_CHAIN_H
#define SGEMU_FAULT_CHAIN_H
#include <stddef.h>
#include <stdint.h>
#include "faults.h"

#define T_NEVER INT64_MAX

struct fault { int type, stream; double toxicity; double a[3]; uint32_t id; };

/* One direction's chain state (per flow): kept across chunks and across fault set changes. */
struct chain_state {
  int64_t last[FAULT_MAX];      /* per stage: when its previous output leaves */
  int64_t sent[FAULT_MAX];      /* limit_data: bytes passed so far */
  int64_t timeout_at;           /* close the connection then (T_NEVER: no) */
  int64_t reset_at;             /* reset the connection then (T_NEVER: no) */
  int64_t close_at;             /* close after the queued data, at that time (T_NEVER: no) */
  uint8_t reset_started[FAULT_MAX];
  uint8_t dropping;             /* limit reached: what follows is discarded */
};

struct piece { uint32_t off, len; int64_t t; uint8_t eof; };

/* Scratch for chain_run: two arrays of `cap` pieces (the caller's, reused). */
struct chain_scratch { struct piece *a, *b; int cap; };

/*
 * A flow's chain state after its faults changed from old[0..old_n) (rolled: old_mask) to
 * f[0..n): faults kept (same id) keep their roll and their stage state (a limit_data's count, a
 * reset_peer's deadline); new ones are rolled. Returns the new mask; changed[s] says whether
 * stream s's chain differs (its queued data is then let go and its timeout restarts).
 */
uint32_t chain_change(const struct fault *old, int old_n, uint32_t old_mask, const struct fault *f, int n,
                      struct chain_state st[2], int64_t now, int changed[2], double *rolled_by_type);

/*
 * Runs one chunk (len bytes, or the EOF when eof) arriving at `now` through the faults of `stream`
 * that are in `mask`. Returns the number of pieces written to *out (pointing into the scratch),
 * ordered by time; the decisions land in st (timeout_at, reset_at, close_at, dropping).
 */
int chain_run(const struct fault *f, int n, uint32_t mask, int stream, struct chain_state *st,
              struct chain_scratch *sc, uint32_t len, int eof, int64_t now, struct piece **out);

/* Parses FAULT_REC doubles per fault (src/native/fault-codes.ts) → count, or -1 when malformed. */
int chain_parse(const double *v, size_t len, struct fault *out);

/* A uniform double in [0, 1) and an integer in [lo, hi] (per thread, xorshift). */
double chain_rand01(void);
int64_t chain_rand_range(int64_t lo, int64_t hi);

#endif
