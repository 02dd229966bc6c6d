/* KANLinear on a uniform grid: forward and backward, one row at a time (CPU, float32).

   Built by kamoe_viz/nn/native.py (cc -O3 -shared, for this machine's CPU) and called through ctypes. The PyTorch
   path in spline_ops.py computes the same thing; tests compare the two.

   For input i: s = shift_i + x * inv_step_i (= t + 1, t = (x - t_0) / h), clamped to [0, s_max] (NaN -> 0);
   w = floor(s), u = s - w. Basis function j is nonzero only for r = w - 1 - j in 0..k, where it equals the piece
   P_r(u) = sum_p coef[r][p] u^p of the cardinal B-spline.

   Why one row at a time: a row's features (base(x_i) and the J basis values of each input, (J+1)*I floats) stay in
   L1 cache, so the layer costs one pass over x, with no padded feature matrix written to memory and read back
   (which is what made the PyTorch path slow: memory traffic and op count, not FLOPs). Every inner loop runs over
   contiguous inputs or outputs, so the compiler vectorises it.

   Feature layout of a row: q = j * I + i for the basis values (j < J), q = J * I + i for base(x_i). Weights are
   repacked once per call to match: by output (O, Q) for narrow layers (dot products over q), by feature (Q, O)
   for wide ones (updates over o, skipping the basis values that are zero). */

#include <stdlib.h>
#include <string.h>

#define MAX_PIECES 8 /* spline order <= 7 */
#define WIDE 16      /* from this many outputs on, loop over outputs innermost */
#define TILE 64      /* outputs summed in registers at a time (4 AVX-512 or 8 AVX2 registers) */

enum { BASE_SILU = 0, BASE_RELU = 1, BASE_ELU = 2, BASE_IDENTITY = 3 };

typedef struct {
    long long n_in, n_out, n_basis; /* I, O, J */
    int order;                      /* k */
    int base;
    float s_max;
    const float *shift, *inv_step, *coef, *dcoef;
} Layer;

/* exp(x) to about 2 ulp (Cephes' expf), written so that loops calling it vectorise (no libm call). */
static inline float exp_vec(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f); /* x = n ln2 + r, |r| <= ln2 / 2 */
    x = x - n * 0.693359375f + n * 2.12194440e-4f;
    float y = ((((1.9875691500e-4f * x + 1.3981999507e-3f) * x + 8.3334519073e-3f) * x + 4.1665795894e-2f) * x +
               1.6666665459e-1f) * x + 5.0000001201e-1f;
    y = y * (x * x) + x + 1.0f;
    union { int i; float f; } scale = {.i = ((int)n + 127) << 23}; /* 2^n (a union, not memcpy: vectorises) */
    return y * scale.f;
}

/* out[i] = table[r][i] for the piece r = w_i - 1 - j of basis function j that is active at input i (0 if none). */
static inline __attribute__((always_inline)) void select_pieces(const long long I, const long long j,
                                                                const float *restrict cell,
                                                                const float *restrict table, float *restrict out,
                                                                const int K) {
    for (long long i = 0; i < I; i++) {
        const float offset = cell[i] - (float)(j + 1);
        float v = 0.0f;
        for (int r = 0; r <= K; r++) v = offset == (float)r ? table[r * I + i] : v;
        out[i] = v;
    }
}

/* Basis values f[j * I + i] (and derivatives d, if not NULL) of one row for a compile-time order K, so that the
   loops over pieces unroll and each pass over the inputs keeps its pieces in registers (vectorised selects).
   Every pointer is a restrict parameter: GCC then vectorises without runtime alias checks. */
static inline __attribute__((always_inline)) void basis_order(
    const long long I, const long long J, const float s_max, const float *restrict x, const float *restrict shift,
    const float *restrict inv_step, const float *restrict coef, const float *restrict dcoef, float *restrict f,
    float *restrict d, float *restrict cell, float *restrict piece, float *restrict dpiece, const int K) {
    for (long long i = 0; i < I; i++) {
        float s = shift[i] + x[i] * inv_step[i];
        s = s > 0.0f ? s : 0.0f; /* also NaN -> 0 */
        s = s < s_max ? s : s_max;
        const float w = (float)(int)s, u = s - w; /* w as float: exact for these small integers */
        cell[i] = w;
        for (int r = 0; r <= K; r++) { /* Horner's rule */
            float acc = coef[r * (K + 1) + K];
            for (int p = K - 1; p >= 0; p--) acc = acc * u + coef[r * (K + 1) + p];
            piece[r * I + i] = acc;
        }
    }
    if (d)
        for (long long i = 0; i < I; i++) {
            const float u = shift[i] + x[i] * inv_step[i] - cell[i];
            for (int r = 0; r <= K; r++) {
                float acc = dcoef[r * (K + 1) + K];
                for (int p = K - 1; p >= 0; p--) acc = acc * u + dcoef[r * (K + 1) + p];
                dpiece[r * I + i] = acc;
            }
        }
    for (long long j = 0; j < J; j++) {
        select_pieces(I, j, cell, piece, f + j * I, K);
        if (d) select_pieces(I, j, cell, dpiece, d + j * I, K);
    }
}

#define BASIS(K) \
    static void basis_##K(const Layer *L, const float *x, float *f, float *d, float *scratch) { \
        basis_order(L->n_in, L->n_basis, L->s_max, x, L->shift, L->inv_step, L->coef, L->dcoef, f, d, scratch, \
                    scratch + L->n_in, scratch + (1 + MAX_PIECES) * L->n_in, K); \
    }
BASIS(0) BASIS(1) BASIS(2) BASIS(3) BASIS(4) BASIS(5) BASIS(6) BASIS(7)
static void (*const BASIS_BY_ORDER[MAX_PIECES])(const Layer *, const float *, float *, float *, float *) = {
    basis_0, basis_1, basis_2, basis_3, basis_4, basis_5, basis_6, basis_7};

/* base(x_i) into fb and, if db is not NULL, base'(x_i) into db; one loop each, so that both vectorise. */
static void base_features(int kind, long long I, const float *restrict x, float *restrict fb, float *restrict db) {
    switch (kind) {
    case BASE_SILU:
        for (long long i = 0; i < I; i++) fb[i] = x[i] / (1.0f + exp_vec(-x[i]));
        if (db)
            for (long long i = 0; i < I; i++) {
                const float sig = 1.0f / (1.0f + exp_vec(-x[i]));
                db[i] = sig * (1.0f + x[i] * (1.0f - sig));
            }
        break;
    case BASE_RELU:
        for (long long i = 0; i < I; i++) fb[i] = x[i] > 0.0f ? x[i] : 0.0f;
        if (db)
            for (long long i = 0; i < I; i++) db[i] = x[i] > 0.0f ? 1.0f : 0.0f;
        break;
    case BASE_ELU:
        for (long long i = 0; i < I; i++) {
            const float negative = exp_vec(x[i]) - 1.0f; /* computed for every x: no branch */
            fb[i] = x[i] > 0.0f ? x[i] : negative;
        }
        if (db)
            for (long long i = 0; i < I; i++) db[i] = x[i] > 0.0f ? 1.0f : fb[i] + 1.0f;
        break;
    default:
        for (long long i = 0; i < I; i++) fb[i] = x[i];
        if (db)
            for (long long i = 0; i < I; i++) db[i] = 1.0f;
    }
}

/* Row features: f[q] (basis values, then base values) and, if d is not NULL, d[q] = df/dx without the 1/h of
   the basis part. scratch: (2 * MAX_PIECES + 1) * I floats. */
static void row_features(const Layer *L, const float *restrict x, float *restrict f, float *restrict d,
                         float *restrict scratch) {
    const long long I = L->n_in, J = L->n_basis;
    BASIS_BY_ORDER[L->order](L, x, f, d, scratch);
    float *restrict fb = f + J * I;
    float *restrict db = d ? d + J * I : NULL;
    base_features(L->base, I, x, fb, db);
}

/* Copies base (O, I) and spline (O, I, J) weights into by-output (O, Q) or by-feature (Q, O) packed order
   (into_packed), or back out of it (skipping a NULL destination). One loop for both directions. */
static void repack(const Layer *L, float *packed, float *base_weight, float *spline_weight, int into_packed) {
    const long long I = L->n_in, J = L->n_basis, O = L->n_out, Q = (J + 1) * I;
    const int wide = O >= WIDE;
    for (long long o = 0; o < O; o++)
        for (long long i = 0; i < I; i++)
            for (long long j = 0; j <= J; j++) { /* j == J: the base weight */
                const long long q = j * I + i;
                float *slot = packed + (wide ? q * O + o : o * Q + q);
                float *weight = j < J ? (spline_weight ? spline_weight + (o * I + i) * J + j : NULL)
                                      : (base_weight ? base_weight + o * I + i : NULL);
                if (!weight) continue;
                if (into_packed) *slot = *weight;
                else *weight = *slot;
            }
}

/* row = bias + sum_q f[q] * packed[q, :] for the by-feature layout. TILE outputs at a time are summed in registers
   over all features, then stored once: updating the whole row in memory for every feature would cost a load and a
   store per output and feature. */
static void wide_row(const float *restrict f, const long long Q, const float *restrict packed, const long long O,
                     const float *restrict bias, float *restrict row) {
    long long o0 = 0;
    for (; o0 + TILE <= O; o0 += TILE) {
        float acc[TILE];
        for (int o = 0; o < TILE; o++) acc[o] = bias ? bias[o0 + o] : 0.0f;
        for (long long q = 0; q < Q; q++) {
            const float fq = f[q];
            if (fq == 0.0f) continue; /* most basis values are */
            const float *restrict wq = packed + q * O + o0;
            for (int o = 0; o < TILE; o++) acc[o] += fq * wq[o];
        }
        for (int o = 0; o < TILE; o++) row[o0 + o] = acc[o];
    }
    if (o0 == O) return;
    for (long long o = o0; o < O; o++) row[o] = bias ? bias[o] : 0.0f;
    for (long long q = 0; q < Q; q++) {
        const float fq = f[q];
        if (fq == 0.0f) continue;
        const float *restrict wq = packed + q * O;
        for (long long o = o0; o < O; o++) row[o] += fq * wq[o];
    }
}

static int setup(Layer *L, long long N, long long I, long long O, long long J, int k, int base, float s_max,
                 const float *shift, const float *inv_step, const float *coef, const float *dcoef) {
    (void)N;
    L->n_in = I, L->n_out = O, L->n_basis = J, L->order = k, L->base = base, L->s_max = s_max;
    L->shift = shift, L->inv_step = inv_step, L->coef = coef, L->dcoef = dcoef;
    return k >= 0 && k < MAX_PIECES && I > 0 && O > 0 && J > 0;
}

int kan_forward(long long N, long long I, long long O, long long J, int k, int base, float s_max,
                const float *x, const float *shift, const float *inv_step, const float *base_weight,
                const float *spline_weight, const float *bias, const float *coef, const float *dcoef,
                float *out) {
    Layer L;
    if (!setup(&L, N, I, O, J, k, base, s_max, shift, inv_step, coef, dcoef)) return 1;
    const long long Q = (J + 1) * I;
    float *packed = malloc(sizeof(float) * (Q * O + Q + (2 * MAX_PIECES + 2) * I));
    if (!packed) return 2;
    float *f = packed + Q * O, *scratch = f + Q;
    repack(&L, packed, (float *)base_weight, (float *)spline_weight, 1);
    for (long long n = 0; n < N; n++) {
        float *restrict row = out + n * O;
        row_features(&L, x + n * I, f, NULL, scratch);
        if (O >= WIDE) {
            wide_row(f, Q, packed, O, bias, row);
        } else {
            for (long long o = 0; o < O; o++) {
                const float *restrict wo = packed + o * Q;
                float acc = 0.0f;
                for (long long q = 0; q < Q; q++) acc += wo[q] * f[q];
                row[o] = acc + (bias ? bias[o] : 0.0f);
            }
        }
    }
    free(packed);
    return 0;
}

/* Gradients for grad_out g (N, O): grad_x (N, I), grad_base (O, I), grad_spline (O, I, J); any may be NULL. */
int kan_backward(long long N, long long I, long long O, long long J, int k, int base, float s_max,
                 const float *x, const float *shift, const float *inv_step, const float *base_weight,
                 const float *spline_weight, const float *coef, const float *dcoef, const float *g,
                 float *grad_x, float *grad_base, float *grad_spline) {
    Layer L;
    if (!setup(&L, N, I, O, J, k, base, s_max, shift, inv_step, coef, dcoef)) return 1;
    const long long Q = (J + 1) * I;
    const int need_weights = grad_base || grad_spline;
    float *packed = malloc(sizeof(float) * (2 * Q * O + 3 * Q + (2 * MAX_PIECES + 2) * I));
    if (!packed) return 2;
    float *grad_packed = packed + Q * O, *f = grad_packed + Q * O, *d = f + Q, *gf = d + Q, *scratch = gf + Q;
    repack(&L, packed, (float *)base_weight, (float *)spline_weight, 1);
    memset(grad_packed, 0, sizeof(float) * Q * O);
    for (long long n = 0; n < N; n++) {
        const float *restrict gr = g + n * O;
        row_features(&L, x + n * I, f, grad_x ? d : NULL, scratch);
        if (O >= WIDE) {
            for (long long q = 0; q < Q; q++) {
                const float *restrict wq = packed + q * O;
                float acc = 0.0f;
                for (long long o = 0; o < O; o++) acc += wq[o] * gr[o];
                gf[q] = acc;
                const float fq = f[q];
                if (!need_weights || fq == 0.0f) continue;
                float *restrict gq = grad_packed + q * O;
                for (long long o = 0; o < O; o++) gq[o] += fq * gr[o];
            }
        } else {
            memset(gf, 0, sizeof(float) * Q);
            for (long long o = 0; o < O; o++) {
                const float go = gr[o];
                const float *restrict wo = packed + o * Q;
                float *restrict gwo = grad_packed + o * Q;
                for (long long q = 0; q < Q; q++) gf[q] += go * wo[q];
                if (need_weights)
                    for (long long q = 0; q < Q; q++) gwo[q] += go * f[q];
            }
        }
        if (grad_x) {
            float *restrict gx = grad_x + n * I;
            for (long long i = 0; i < I; i++) gx[i] = 0.0f;
            for (long long j = 0; j < J; j++)
                for (long long i = 0; i < I; i++) gx[i] += gf[j * I + i] * d[j * I + i];
            for (long long i = 0; i < I; i++)
                gx[i] = gx[i] * inv_step[i] + gf[J * I + i] * d[J * I + i];
        }
    }
    if (need_weights) repack(&L, grad_packed, grad_base, grad_spline, 0);
    free(packed);
    return 0;
}
