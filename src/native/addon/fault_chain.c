/* The TCP fault chain: see fault_chain.h. Pure computation; called by the relay thread only. */
#include "fault_chain.h"

#include <stddef.h>
#include <time.h>

static __thread uint64_t rng_state;

static uint64_t rng_next(void) {
  if (rng_state == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    rng_state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts ^ 0x9e3779b97f4a7c15ull;
  }
  uint64_t x = rng_state;   /* xorshift64* */
  x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
  rng_state = x;
  return x * 0x2545f4914f6cdd1dull;
}

double chain_rand01(void) { return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0); }

int64_t chain_rand_range(int64_t lo, int64_t hi) {
  if (hi <= lo) return lo;
  return lo + (int64_t)(rng_next() % (uint64_t)(hi - lo + 1));
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t later(int64_t t, int64_t us) { return t == T_NEVER ? T_NEVER : t + us; }

int chain_parse(const double *v, size_t len, struct fault *out) {
  if (len % FAULT_REC != 0 || len / FAULT_REC > FAULT_MAX) return -1;
  int n = (int)(len / FAULT_REC);
  for (int i = 0; i < n; i++) {
    const double *r = v + i * FAULT_REC;
    if (!(r[0] >= FT_LATENCY && r[0] <= FT_REORDER) || (r[1] != 0 && r[1] != 1) || !(r[2] >= 0 && r[2] <= 1)) return -1;
    for (int j = 3; j < 6; j++) if (!(r[j] >= 0 && r[j] < 9.2e15)) return -1;
    if (!(r[6] >= 0 && r[6] <= 4294967295.0)) return -1;
    out[i].type = (int)r[0];
    out[i].stream = (int)r[1];
    out[i].toxicity = r[2];
    out[i].a[0] = r[3]; out[i].a[1] = r[4]; out[i].a[2] = r[5];
    out[i].id = (uint32_t)r[6];
  }
  return n;
}

uint32_t chain_change(const struct fault *old, int old_n, uint32_t old_mask, const struct fault *f, int n,
                      struct chain_state st[2], int64_t now, int changed[2], double *rolled_by_type) {
  int from[FAULT_MAX];          /* new index → old index with the same id, or -1 */
  int kept_old[FAULT_MAX] = { 0 };
  uint32_t mask = 0;
  changed[0] = changed[1] = 0;
  for (int i = 0; i < n; i++) {
    from[i] = -1;
    for (int j = 0; j < old_n; j++) if (!kept_old[j] && old[j].id == f[i].id) { from[i] = j; kept_old[j] = 1; break; }
    if (from[i] >= 0) {
      if (old_mask >> from[i] & 1) mask |= 1u << i;
    } else {
      changed[f[i].stream] = 1;
      if (f[i].toxicity >= 1.0 || chain_rand01() < f[i].toxicity) {
        mask |= 1u << i;
        if (rolled_by_type) rolled_by_type[f[i].type]++;
      }
    }
  }
  for (int j = 0; j < old_n; j++) if (!kept_old[j]) changed[old[j].stream] = 1;
  for (int s = 0; s < 2; s++) {
    struct chain_state was = st[s], *cs = &st[s];
    int kept_timeout = 0, kept_reset = 0;
    for (int i = 0; i < FAULT_MAX; i++) { cs->last[i] = 0; cs->sent[i] = 0; cs->reset_started[i] = 0; }
    for (int i = 0; i < n; i++) {
      if (f[i].stream != s) continue;
      int j = from[i];
      if (j >= 0) {
        cs->last[i] = was.last[j];
        cs->sent[i] = was.sent[j];
        cs->reset_started[i] = was.reset_started[j];
        if ((mask >> i & 1) && f[i].type == FT_TIMEOUT && f[i].a[0] > 0) kept_timeout = 1;
        if ((mask >> i & 1) && f[i].type == FT_RESET_PEER && was.reset_started[j]) kept_reset = 1;
      }
    }
    if (!changed[s]) continue;    /* the same chain: deadlines and all stay as they were */
    cs->timeout_at = kept_timeout ? was.timeout_at : T_NEVER;
    cs->reset_at = kept_reset ? was.reset_at : T_NEVER;
    for (int i = 0; i < n; i++) {
      if (from[i] >= 0 || f[i].stream != s || !(mask >> i & 1)) continue;
      if (f[i].type == FT_TIMEOUT && f[i].a[0] > 0) {
        int64_t at = now + (int64_t)f[i].a[0] * 1000;
        if (at < cs->timeout_at) cs->timeout_at = at;
      }
    }
    /* close_at and dropping survive a change: a limit reached stays reached */
  }
  return mask;
}

struct out { struct piece *p; int n, cap; };

/* Appends a piece; when the array is full, a data piece joins the previous one (same bytes, the
 * later time): fewer, larger writes rather than lost data. One slot stays free for an EOF. */
static void emit(struct out *o, uint32_t off, uint32_t len, int64_t t, int eof) {
  if (o->n >= o->cap - 1 && !eof && o->n > 0 && !o->p[o->n - 1].eof) {
    struct piece *q = &o->p[o->n - 1];
    q->len = off + len - q->off;
    q->t = max64(q->t, t);
    return;
  }
  o->p[o->n++] = (struct piece){ off, len, t, (uint8_t)eof };
}

struct slicer { struct out *o; int64_t avg, var; int k; int64_t t0, delay; };

/* Toxiproxy's halving: a span within variation of the average is one slice, else split near the
 * middle (± variation) and recurse. */
static void slice(struct slicer *s, int64_t start, int64_t end) {
  if ((end - start) - s->avg <= s->var) {
    emit(s->o, (uint32_t)start, (uint32_t)(end - start), later(s->t0, s->k * s->delay), 0);
    s->k++;
    return;
  }
  int64_t mid = start + (end - start) / 2 + (s->var > 0 ? chain_rand_range(-s->var, s->var - 1) : 0);
  if (mid <= start) mid = start + 1;
  if (mid >= end) mid = end - 1;
  slice(s, start, mid);
  slice(s, mid, end);
}

int chain_run(const struct fault *f, int n, uint32_t mask, int stream, struct chain_state *st,
              struct chain_scratch *sc, uint32_t len, int eof, int64_t now, struct piece **out) {
  struct piece *in = sc->a, *spare = sc->b;
  int nin = 0;
  *out = in;
  if (st->dropping && !eof) return 0;
  in[nin++] = (struct piece){ 0, eof ? 0 : len, now, (uint8_t)eof };
  for (int i = 0; i < n && nin > 0; i++) {
    if (!(mask >> i & 1) || f[i].stream != stream) continue;
    const double *a = f[i].a;
    struct out o = { spare, 0, sc->cap };
    int64_t *last = &st->last[i];
    for (int k = 0; k < nin; k++) {
      struct piece p = in[k];
      switch (f[i].type) {
        case FT_LATENCY: {
          int64_t d = (int64_t)a[0] * 1000;
          if (!p.eof && a[1] > 0) d += chain_rand_range(-(int64_t)a[1] * 1000, (int64_t)a[1] * 1000);
          if (d < 0) d = 0;
          *last = p.eof ? max64(*last, p.t) : max64(*last, later(p.t, d));
          emit(&o, p.off, p.len, *last, p.eof);
          break;
        }
        case FT_BANDWIDTH: {
          int64_t rate = (int64_t)a[0];
          if (rate <= 0) { *last = T_NEVER; emit(&o, p.off, p.len, T_NEVER, p.eof); break; }
          if (p.eof) { *last = max64(*last, p.t); emit(&o, p.off, 0, *last, 1); break; }
          int64_t step = rate * 100;
          for (uint32_t off = p.off, end = p.off + p.len; off < end; ) {
            uint32_t m = end - off > (uint64_t)step ? (uint32_t)step : end - off;
            *last = later(max64(*last, p.t), (int64_t)m * 1000 / rate);
            emit(&o, off, m, *last, 0);
            off += m;
          }
          break;
        }
        case FT_SLICER: {
          if (p.eof || p.len == 0) { *last = max64(*last, p.t); emit(&o, p.off, p.len, *last, p.eof); break; }
          struct slicer s = { &o, a[0] >= 1 ? (int64_t)a[0] : 1, (int64_t)a[1], 0, max64(*last, p.t), (int64_t)a[2] };
          if (s.var >= s.avg) s.var = s.avg - 1;
          slice(&s, p.off, (int64_t)p.off + p.len);
          *last = later(s.t0, s.k * s.delay);
          break;
        }
        case FT_LIMIT_DATA: {
          if (p.eof) { emit(&o, p.off, 0, p.t, 1); break; }
          int64_t left = (int64_t)a[0] - st->sent[i];
          if (left < 0) left = 0;
          uint32_t m = (int64_t)p.len > left ? (uint32_t)left : p.len;
          if (m > 0) { emit(&o, p.off, m, p.t, 0); st->sent[i] += m; }
          if (st->sent[i] >= (int64_t)a[0]) {
            st->dropping = 1;
            if (p.t < st->close_at) st->close_at = p.t;
            k = nin;                  /* the rest of the chunk is dropped */
          }
          break;
        }
        case FT_TIMEOUT:
          if (p.eof) { emit(&o, p.off, 0, p.t, 1); break; }
          if (a[0] > 0) st->timeout_at = later(p.t, (int64_t)a[0] * 1000);   /* each input restarts it */
          break;                      /* the data is dropped */
        case FT_RESET_PEER:
          if (!st->reset_started[i]) {
            st->reset_started[i] = 1;
            int64_t at = later(p.t, (int64_t)a[0] * 1000);
            if (at < st->reset_at) st->reset_at = at;
          }
          break;                      /* the data (and the EOF) are dropped: the reset ends it */
        case FT_SLOW_CLOSE:
          emit(&o, p.off, p.len, p.eof ? later(p.t, (int64_t)a[0] * 1000) : p.t, p.eof);
          break;
        default:                      /* a UDP-only type on a TCP listener: no effect */
          emit(&o, p.off, p.len, p.t, p.eof);
      }
    }
    spare = in;
    in = o.p;
    nin = o.n;
  }
  *out = in;
  return nin;
}
