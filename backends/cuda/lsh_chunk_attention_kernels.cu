// The fused LSH chunk-attention kernels (launchers in lsh_chunk_attention_kernels.h): the same
// function as the CPU kernel (models/reformer/chunk_attention_cpu.cpp) and the op path
// (models/reformer/chunk_attention.cpp), FlashAttention style.
//
// Block = (batch-head, query chunk of one round), 256 threads as a 16 x 16 grid (tx, ty). A C x C
// score tile is computed as micro-tiles: thread (tx, ty) owns rows i = ty + 16 a and columns
// j = tx + 16 b (a, b < C / 16); an output tile C x DP the same way with columns e = tx + 16 b.
// Every score is one thread's sequential fmaf chain over e = 0 .. d-1 (score_tile), so forward and
// backward compute bit-identical logits: backward's logit - max_logit is exact, as on the CPU.
//
// Forward, per round launch: the chunk's queries are loaded once; for each window key chunk the
// block loads K, V, computes and masks the scores (the C x C tile lives only in shared memory),
// updates the rows' online softmax (max, denominator, unnormalised output: one warp per row for
// the statistics), and adds P V. At the end each query row is folded into its token's running
// (max, denominator, output) over the rounds exactly as the CPU kernel's fold; a round's rows are
// distinct tokens, so no two blocks of a launch touch the same token. A last kernel normalises.
//
// Backward, per round launch: P~ = exp((logit - max_logit) - log_denom) and
// dS = P~ (dout V^T keep - dout . out) per tile; dQ accumulates in registers and is added to the
// token's row at the end (the block owns its queries in this round); dK += dS^T Q and
// dV += (P~ keep)^T dout go to the window keys' token rows with f32 atomicAdd (a key chunk is in
// the window of several query chunks).
#include <cmath>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_utils.cuh"
#include "backends/cuda/lsh_chunk_attention_kernels.h"

namespace rw::cuda {
namespace {

using Params = ChunkAttentionParams;
constexpr int kBlock = kChunkAttentionThreads;
constexpr int kWarps = kBlock / 32;
static_assert(kBlock == 256, "the micro-tile mapping assumes a 16 x 16 thread grid");

__device__ __forceinline__ int64_t wrap_chunk(int64_t chunk, int64_t N) {
  return ((chunk % N) + N) % N;
}

__device__ __forceinline__ float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// A block's shared-memory arrays (chunk_attention_smem's layout).
struct Shared {
  int64_t *q_row, *k_row;
  long long *q_bkt, *k_bkt, *q_tb, *k_tb;
  int *q_tok, *k_tok, *k_ok, *q_chunk, *k_chunk;
  float *stats, *tiles;
};

__device__ __forceinline__ Shared carve(unsigned char* base, const ChunkAttentionSmem& L) {
  Shared s;
  s.q_row = reinterpret_cast<int64_t*>(base + L.q_row);
  s.k_row = reinterpret_cast<int64_t*>(base + L.k_row);
  s.q_bkt = reinterpret_cast<long long*>(base + L.q_bkt);
  s.k_bkt = reinterpret_cast<long long*>(base + L.k_bkt);
  s.q_tb = reinterpret_cast<long long*>(base + L.q_tb);
  s.k_tb = reinterpret_cast<long long*>(base + L.k_tb);
  s.q_tok = reinterpret_cast<int*>(base + L.q_tok);
  s.k_tok = reinterpret_cast<int*>(base + L.k_tok);
  s.k_ok = reinterpret_cast<int*>(base + L.k_ok);
  s.q_chunk = reinterpret_cast<int*>(base + L.q_chunk);
  s.k_chunk = reinterpret_cast<int*>(base + L.k_chunk);
  s.stats = reinterpret_cast<float*>(base + L.stats);
  s.tiles = reinterpret_cast<float*>(base + L.tiles);
  return s;
}

// Where one block sits: batch-head, round, query chunk (within the round and in the ticker).
struct Place {
  int64_t bh, round, chunk_in_round, chunk, n_chunks, S;
};

__device__ __forceinline__ Place place_of(const Params& p, int64_t round, int64_t C) {
  const int64_t ncr = p.length / C;
  Place w;
  w.bh = static_cast<int64_t>(blockIdx.x) / ncr;
  w.chunk_in_round = static_cast<int64_t>(blockIdx.x) % ncr;
  w.round = round;
  w.chunk = round * ncr + w.chunk_in_round;
  w.n_chunks = p.n_hashes * ncr;
  w.S = p.n_hashes * p.length;
  return w;
}

// Loads the query chunk's metadata (its tokens, rows, buckets, per-round chunks and buckets).
template <int C>
__device__ void load_query_meta(const Params& p, const Place& w, const Shared& s) {
  const int64_t* perm = p.perm + w.bh * w.S;
  for (int i = threadIdx.x; i < C; i += kBlock) {
    const int64_t slot = w.chunk * C + i;
    const int64_t tok = perm[slot];
    s.q_tok[i] = static_cast<int>(tok);
    s.q_row[i] = w.bh * p.length + tok;
    if (!p.attend_across_buckets) s.q_bkt[i] = p.slot_bucket[w.bh * w.S + slot];
  }
  if (p.count_duplicates) {
    const int64_t n = p.n_hashes;
    for (int64_t x = threadIdx.x; x < C * n; x += kBlock) {
      const int64_t i = x / n, r = x % n;
      const int64_t row = w.bh * p.length + perm[w.chunk * C + i];
      s.q_chunk[x] = static_cast<int>(p.token_chunk[row * n + r]);
      s.q_tb[x] = p.token_bucket[row * n + r];
    }
  }
}

// Loads the metadata of the key chunk at window position wpos (ticker chunk `kchunk`).
template <int C>
__device__ void load_key_meta(const Params& p, const Place& w, int64_t kchunk, const Shared& s) {
  const int64_t* perm = p.perm + w.bh * w.S;
  for (int j = threadIdx.x; j < C; j += kBlock) {
    const int64_t slot = kchunk * C + j;
    const int64_t tok = perm[slot];
    s.k_tok[j] = static_cast<int>(tok);
    s.k_row[j] = w.bh * p.length + tok;
    s.k_ok[j] = p.valid[w.bh * p.length + tok] ? 1 : 0;
    if (!p.attend_across_buckets) s.k_bkt[j] = p.slot_bucket[w.bh * w.S + slot];
  }
  if (p.count_duplicates) {
    const int64_t n = p.n_hashes;
    for (int64_t x = threadIdx.x; x < C * n; x += kBlock) {
      const int64_t j = x / n, r = x % n;
      const int64_t row = w.bh * p.length + perm[kchunk * C + j];
      s.k_chunk[x] = static_cast<int>(p.token_chunk[row * n + r]);
      s.k_tb[x] = p.token_bucket[row * n + r];
    }
  }
}

// Loads rows [C] of src (T, [BH * Lp, d]) at the given token rows into a [C][DP + 1] f32 tile,
// zero in the padding columns e >= d. The rows are read from perm directly (not from the shared
// row array), so the tile can load in the same phase as the metadata.
template <typename T, int C, int DP>
__device__ void load_tile(const Params& p, const Place& w, int64_t chunk, const T* src,
                          float* tile) {
  const int64_t* perm = p.perm + w.bh * w.S;
  for (int x = threadIdx.x; x < C * DP; x += kBlock) {
    const int i = x / DP, e = x % DP;
    float value = 0.f;
    if (e < p.d) {
      const int64_t row = w.bh * p.length + perm[chunk * C + i];
      value = load(src + row * p.d + e);
    }
    tile[i * (DP + 1) + e] = value;
  }
}

// out[a][b] = sum_e A[ty + 16 a][e] * B[tx + 16 b][e], one sequential fmaf chain per element (the
// same chain in forward and backward, so the logits are bit-identical).
template <int C, int DP>
__device__ __forceinline__ void score_tile(const float* A, const float* B, int64_t d,
                                           float (&out)[C / 16][C / 16]) {
  constexpr int M = C / 16, S = DP + 1;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
  for (int a = 0; a < M; ++a) {
#pragma unroll
    for (int b = 0; b < M; ++b) out[a][b] = 0.f;
  }
  for (int e = 0; e < d; ++e) {
    float x[M], y[M];
#pragma unroll
    for (int a = 0; a < M; ++a) x[a] = A[(ty + 16 * a) * S + e];
#pragma unroll
    for (int b = 0; b < M; ++b) y[b] = B[(tx + 16 * b) * S + e];
#pragma unroll
    for (int a = 0; a < M; ++a) {
#pragma unroll
      for (int b = 0; b < M; ++b) out[a][b] = fmaf(x[a], y[b], out[a][b]);
    }
  }
}

// How many times query i meets key j over all rounds and window positions (chunk_attention.cpp's
// duplicate_counts, chunk_attention_cpu.cpp's subtract_log_counts).
__device__ int duplicate_count(const Params& p, const Shared& s, int i, int j, int64_t N) {
  const int64_t n = p.n_hashes;
  const int* qc = s.q_chunk + i * n;
  const int* kc = s.k_chunk + j * n;
  const long long* qb = s.q_tb + i * n;
  const long long* kb = s.k_tb + j * n;
  int count = 0;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t o = -p.chunks_before; o <= p.chunks_after; ++o) {
      const int64_t attended = wrap_chunk(qc[r] + o, N);
      for (int64_t r2 = 0; r2 < n; ++r2) {
        if (!p.attend_across_buckets && r2 != r) continue;
        if (attended != kc[r2]) continue;
        if (!p.attend_across_buckets && qb[r] != kb[r]) continue;
        ++count;
      }
    }
  }
  return count;
}

// The masked logit of query i and key j (the CPU kernel's order: duplicate counts, self penalty
// added, a forbidden key replaced by the masked penalty).
__device__ __forceinline__ float masked_logit(const Params& p, const Shared& s, int i, int j,
                                              float score, int64_t N) {
  if (p.count_duplicates) {
    const int count = duplicate_count(p, s, i, j, N);
    if (count > 1) score -= logf(static_cast<float>(count));
  }
  const int qt = s.q_tok[i], kt = s.k_tok[j];
  if (kt == qt) score += p.self_penalty;
  bool allowed = s.k_ok[j] != 0 && (!p.causal || kt <= qt);
  if (!p.attend_across_buckets && s.k_bkt[j] != s.q_bkt[i]) allowed = false;
  return allowed ? score : p.masked_penalty;
}

// The dropout multiplier (0 or keep_scale) of query row i and window column wc = wpos C + j of
// the block's query chunk: element ((bh count + chunk - first) C + i) Wc + wc of the dropout
// draw of its block of chunks (chunk_attention_blocks.h's for_each_block).
__device__ __forceinline__ float keep_multiplier(const Params& p, const Place& w, int64_t C, int i,
                                                 int64_t wc) {
  const int64_t ncr = p.length / C, Wc = (p.chunks_before + 1 + p.chunks_after) * C;
  const int64_t block = w.chunk_in_round / p.block_chunks, first = block * p.block_chunks;
  const int64_t count = min(p.block_chunks, ncr - first);
  const uint64_t element =
      static_cast<uint64_t>(((w.bh * count + (w.chunk_in_round - first)) * C + i) * Wc + wc);
  PhiloxState state = p.dropout_state;
  state.counter += static_cast<uint64_t>(w.round) * p.round_advance +
                   static_cast<uint64_t>(block) * p.block_advance;
  const PhiloxBlock b = philox_block(state, element / 4);
  const int word = static_cast<int>(element % 4);
  const uint32_t bits = word == 0 ? b.w[0] : word == 1 ? b.w[1] : word == 2 ? b.w[2] : b.w[3];
  // The CPU's bernoulli: u < keep_prob in double, u = philox_uniform(bits).
  return philox_uniform(bits) < p.keep_prob ? p.keep_scale : 0.f;
}

// --- forward -------------------------------------------------------------------------------------

template <typename T, int C, int DP>
__global__ void __launch_bounds__(kBlock)
    forward_round_kernel(Params p, int64_t round, const T* __restrict__ q, const T* __restrict__ k,
                         const T* __restrict__ v, float* acc, float* run_max, float* run_denom) {
  constexpr int M = C / 16, E = DP / 16, DS = DP + 1, SS = C + 1;
  extern __shared__ __align__(16) unsigned char smem[];
  const ChunkAttentionSmem L =
      chunk_attention_smem(C, DP, p.n_hashes, !p.attend_across_buckets, p.count_duplicates, false);
  const Shared s = carve(smem, L);
  float* row_m = s.stats;
  float* row_l = s.stats + C;
  float* row_alpha = s.stats + 2 * C;
  float* fold_old = s.stats + 3 * C;
  float* fold_new = s.stats + 4 * C;
  float* Qs = s.tiles;
  float* Ks = Qs + C * DS;
  float* Vs = Ks + C * DS;
  float* Ps = Vs + C * DS;

  const Place w = place_of(p, round, C);
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16, warp = tid / 32, lane = tid % 32;
  const int64_t d = p.d, W = p.chunks_before + 1 + p.chunks_after;

  load_query_meta<C>(p, w, s);
  load_tile<T, C, DP>(p, w, w.chunk, q, Qs);
  for (int i = tid; i < C; i += kBlock) {
    row_m[i] = -INFINITY;
    row_l[i] = 0.f;
  }
  float o[M][E];
#pragma unroll
  for (int a = 0; a < M; ++a) {
#pragma unroll
    for (int b = 0; b < E; ++b) o[a][b] = 0.f;
  }

  for (int64_t wpos = 0; wpos < W; ++wpos) {
    const int64_t kchunk = wrap_chunk(w.chunk + wpos - p.chunks_before, w.n_chunks);
    // (1) the key chunk's metadata and K, V tiles. The previous iteration ended with a barrier
    // after its last read of them.
    load_key_meta<C>(p, w, kchunk, s);
    load_tile<T, C, DP>(p, w, kchunk, k, Ks);
    load_tile<T, C, DP>(p, w, kchunk, v, Vs);
    __syncthreads();
    // (2) masked logits into Ps.
    {
      float sc[M][M];
      score_tile<C, DP>(Qs, Ks, d, sc);
#pragma unroll
      for (int a = 0; a < M; ++a) {
#pragma unroll
        for (int b = 0; b < M; ++b) {
          const int i = ty + 16 * a, j = tx + 16 * b;
          Ps[i * SS + j] = masked_logit(p, s, i, j, sc[a][b], w.n_chunks);
        }
      }
    }
    __syncthreads();
    // (3) online softmax statistics, one warp per row: Ps becomes exp(logit - new max), dropped.
    for (int i = warp; i < C; i += kWarps) {
      float x[C / 32];
      float chunk_max = -INFINITY;
#pragma unroll
      for (int t = 0; t < C / 32; ++t) {
        x[t] = Ps[i * SS + lane + 32 * t];
        chunk_max = fmaxf(chunk_max, x[t]);
      }
      chunk_max = warp_max(chunk_max);
      const float m_old = row_m[i];
      const float m_new = fmaxf(m_old, chunk_max);
      float sum = 0.f;
#pragma unroll
      for (int t = 0; t < C / 32; ++t) {
        const int j = lane + 32 * t;
        const float e = expf(x[t] - m_new);
        sum += e;
        Ps[i * SS + j] = p.dropout ? e * keep_multiplier(p, w, C, i, wpos * C + j) : e;
      }
      sum = warp_sum(sum);  // also orders every lane's read of row_m[i] before lane 0's write
      __syncwarp();         // and says so to compute-sanitizer's racecheck
      if (lane == 0) {
        const float alpha = expf(m_old - m_new);  // 0 for the first chunk (m_old = -inf)
        row_alpha[i] = alpha;
        row_l[i] = row_l[i] * alpha + sum;
        row_m[i] = m_new;
      }
    }
    __syncthreads();
    // (4) o = o alpha + P V.
#pragma unroll
    for (int a = 0; a < M; ++a) {
      const float alpha = row_alpha[ty + 16 * a];
#pragma unroll
      for (int b = 0; b < E; ++b) o[a][b] *= alpha;
    }
    for (int j = 0; j < C; ++j) {
      float pr[M], vv[E];
#pragma unroll
      for (int a = 0; a < M; ++a) pr[a] = Ps[(ty + 16 * a) * SS + j];
#pragma unroll
      for (int b = 0; b < E; ++b) vv[b] = Vs[j * DS + tx + 16 * b];
#pragma unroll
      for (int a = 0; a < M; ++a) {
#pragma unroll
        for (int b = 0; b < E; ++b) o[a][b] = fmaf(pr[a], vv[b], o[a][b]);
      }
    }
    __syncthreads();
  }

  // Fold the round into the tokens' running (max, denominator, output), as the CPU kernel.
  const bool first_round = round == 0;
  for (int i = tid; i < C; i += kBlock) {
    const int64_t row = s.q_row[i];
    const float mx = row_m[i], z = row_l[i];
    if (first_round) {
      run_max[row] = mx;
      run_denom[row] = z;
    } else {
      const float old_max = run_max[row];
      const float new_max = fmaxf(old_max, mx);
      const float old_scale = expf(old_max - new_max), new_scale = expf(mx - new_max);
      run_denom[row] = run_denom[row] * old_scale + z * new_scale;
      run_max[row] = new_max;
      fold_old[i] = old_scale;
      fold_new[i] = new_scale;
    }
  }
  __syncthreads();
#pragma unroll
  for (int a = 0; a < M; ++a) {
    const int i = ty + 16 * a;
    float* dst = acc + s.q_row[i] * d;
#pragma unroll
    for (int b = 0; b < E; ++b) {
      const int e = tx + 16 * b;
      if (e >= d) continue;
      dst[e] = first_round ? o[a][b] : dst[e] * fold_old[i] + o[a][b] * fold_new[i];
    }
  }
}

// out = acc / denom where the token has an attended key, else 0; log_denom = log(denom).
__global__ void finalize_kernel(float* acc, const float* run_max, const float* run_denom,
                                float* log_denom, int64_t tokens, int64_t d, float no_key) {
  RW_CUDA_GRID_STRIDE_LOOP(x, tokens * d) {
    const int64_t tok = x / d;
    const float ld = logf(run_denom[tok]);
    const bool has_key = run_max[tok] + ld > no_key;
    const float inv = has_key ? 1.f / run_denom[tok] : 0.f;
    acc[x] = has_key ? acc[x] * inv : 0.f;
    if (x % d == 0) log_denom[tok] = ld;
  }
}

// --- backward ------------------------------------------------------------------------------------

// grad = dout where the token has an attended key, else 0 (f32); dout_out = grad . out. One warp
// per token.
template <typename T>
__global__ void backward_prepare_kernel(const T* out, const T* dout, const float* max_logit,
                                        const float* log_denom, float* grad, float* dout_out,
                                        int64_t tokens, int64_t d, float no_key) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t tok = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
       tok < tokens; tok += warps) {
    const bool has_key = max_logit[tok] + log_denom[tok] > no_key;
    float dot = 0.f;
    for (int64_t e = lane; e < d; e += 32) {
      const float g = has_key ? load(dout + tok * d + e) : 0.f;
      grad[tok * d + e] = g;
      dot += g * load(out + tok * d + e);
    }
    dot = warp_sum(dot);
    if (lane == 0) dout_out[tok] = dot;
  }
}

template <typename T, int C, int DP>
__global__ void __launch_bounds__(kBlock)
    backward_round_kernel(Params p, int64_t round, const T* __restrict__ q, const T* __restrict__ k,
                          const T* __restrict__ v, const float* __restrict__ grad,
                          const float* __restrict__ dout_out, const float* __restrict__ max_logit,
                          const float* __restrict__ log_denom, float* dq, float* dk, float* dv) {
  constexpr int M = C / 16, E = DP / 16, DS = DP + 1, SS = C + 1;
  extern __shared__ __align__(16) unsigned char smem[];
  const ChunkAttentionSmem L =
      chunk_attention_smem(C, DP, p.n_hashes, !p.attend_across_buckets, p.count_duplicates, true);
  const Shared s = carve(smem, L);
  float* q_max = s.stats;
  float* q_ld = s.stats + C;
  float* q_dd = s.stats + 2 * C;
  float* Qs = s.tiles;
  float* Gs = Qs + C * DS;
  float* Ks = Gs + C * DS;
  float* Vs = Ks + C * DS;
  float* As = Vs + C * DS;  // P~ keep (the dropped probabilities)
  float* Bs = As + C * SS;  // dS

  const Place w = place_of(p, round, C);
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t d = p.d, W = p.chunks_before + 1 + p.chunks_after;

  load_query_meta<C>(p, w, s);
  load_tile<T, C, DP>(p, w, w.chunk, q, Qs);
  load_tile<float, C, DP>(p, w, w.chunk, grad, Gs);
  {
    const int64_t* perm = p.perm + w.bh * w.S;
    for (int i = tid; i < C; i += kBlock) {
      const int64_t row = w.bh * p.length + perm[w.chunk * C + i];
      q_max[i] = max_logit[row];
      q_ld[i] = log_denom[row];
      q_dd[i] = dout_out[row];
    }
  }
  float dq_acc[M][E];
#pragma unroll
  for (int a = 0; a < M; ++a) {
#pragma unroll
    for (int b = 0; b < E; ++b) dq_acc[a][b] = 0.f;
  }

  for (int64_t wpos = 0; wpos < W; ++wpos) {
    const int64_t kchunk = wrap_chunk(w.chunk + wpos - p.chunks_before, w.n_chunks);
    load_key_meta<C>(p, w, kchunk, s);
    load_tile<T, C, DP>(p, w, kchunk, k, Ks);
    load_tile<T, C, DP>(p, w, kchunk, v, Vs);
    __syncthreads();
    // P~ and dS of the thread's own elements.
    {
      float sc[M][M], dp[M][M];
      score_tile<C, DP>(Qs, Ks, d, sc);
      score_tile<C, DP>(Gs, Vs, d, dp);
#pragma unroll
      for (int a = 0; a < M; ++a) {
#pragma unroll
        for (int b = 0; b < M; ++b) {
          const int i = ty + 16 * a, j = tx + 16 * b;
          const float logit = masked_logit(p, s, i, j, sc[a][b], w.n_chunks);
          const float prob = expf((logit - q_max[i]) - q_ld[i]);
          const float keep = p.dropout ? keep_multiplier(p, w, C, i, wpos * C + j) : 1.f;
          As[i * SS + j] = prob * keep;
          Bs[i * SS + j] = prob * (dp[a][b] * keep - q_dd[i]);
        }
      }
    }
    __syncthreads();
    // dQ += dS K.
    for (int j = 0; j < C; ++j) {
      float ds[M], kk[E];
#pragma unroll
      for (int a = 0; a < M; ++a) ds[a] = Bs[(ty + 16 * a) * SS + j];
#pragma unroll
      for (int b = 0; b < E; ++b) kk[b] = Ks[j * DS + tx + 16 * b];
#pragma unroll
      for (int a = 0; a < M; ++a) {
#pragma unroll
        for (int b = 0; b < E; ++b) dq_acc[a][b] = fmaf(ds[a], kk[b], dq_acc[a][b]);
      }
    }
    // dK rows (key j = ty + 16 a) += sum_i dS[i][j] Q[i]; dV rows += sum_i A[i][j] G[i].
    {
      float dk_acc[M][E], dv_acc[M][E];
#pragma unroll
      for (int a = 0; a < M; ++a) {
#pragma unroll
        for (int b = 0; b < E; ++b) dk_acc[a][b] = dv_acc[a][b] = 0.f;
      }
      for (int i = 0; i < C; ++i) {
        float ds[M], pr[M], qq[E], gg[E];
#pragma unroll
        for (int a = 0; a < M; ++a) {
          ds[a] = Bs[i * SS + ty + 16 * a];
          pr[a] = As[i * SS + ty + 16 * a];
        }
#pragma unroll
        for (int b = 0; b < E; ++b) {
          qq[b] = Qs[i * DS + tx + 16 * b];
          gg[b] = Gs[i * DS + tx + 16 * b];
        }
#pragma unroll
        for (int a = 0; a < M; ++a) {
#pragma unroll
          for (int b = 0; b < E; ++b) {
            dk_acc[a][b] = fmaf(ds[a], qq[b], dk_acc[a][b]);
            dv_acc[a][b] = fmaf(pr[a], gg[b], dv_acc[a][b]);
          }
        }
      }
#pragma unroll
      for (int a = 0; a < M; ++a) {
        const int64_t row = s.k_row[ty + 16 * a];
#pragma unroll
        for (int b = 0; b < E; ++b) {
          const int e = tx + 16 * b;
          if (e >= d) continue;
          atomicAdd(dk + row * d + e, dk_acc[a][b]);
          atomicAdd(dv + row * d + e, dv_acc[a][b]);
        }
      }
    }
    __syncthreads();  // before the next window position overwrites the tiles and metadata
  }
  // The block's queries are distinct tokens of this round: no other block of the launch adds to
  // their dq rows.
#pragma unroll
  for (int a = 0; a < M; ++a) {
    float* dst = dq + s.q_row[ty + 16 * a] * d;
#pragma unroll
    for (int b = 0; b < E; ++b) {
      const int e = tx + 16 * b;
      if (e < d) dst[e] += dq_acc[a][b];
    }
  }
}

// --- launch --------------------------------------------------------------------------------------

int64_t round_blocks(const Params& p) { return p.batch_heads * (p.length / p.chunk_len); }

std::size_t shared_bytes(const Params& p, int64_t DP, bool backward) {
  return chunk_attention_smem(p.chunk_len, DP, p.n_hashes, !p.attend_across_buckets,
                              p.count_duplicates, backward)
      .total;
}

template <typename Kernel>
void allow_shared(Kernel kernel, std::size_t bytes) {
  RW_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(bytes)));
}

template <typename T, int C, int DP>
void forward_typed(const Params& p, const void* q, const void* k, const void* v, float* acc,
                   float* run_max, float* run_denom, cudaStream_t stream) {
  const std::size_t bytes = shared_bytes(p, DP, false);
  auto kernel = forward_round_kernel<T, C, DP>;
  allow_shared(kernel, bytes);
  const auto blocks = static_cast<unsigned>(round_blocks(p));
  for (int64_t r = 0; r < p.n_hashes; ++r) {
    kernel<<<blocks, kBlock, bytes, stream>>>(p, r, static_cast<const T*>(q),
                                              static_cast<const T*>(k), static_cast<const T*>(v),
                                              acc, run_max, run_denom);
    RW_CUDA_CHECK_LAUNCH();
  }
}

template <typename T, int C, int DP>
void backward_typed(const Params& p, const void* q, const void* k, const void* v, const float* grad,
                    const float* dout_out, const float* max_logit, const float* log_denom,
                    float* dq, float* dk, float* dv, cudaStream_t stream) {
  const std::size_t bytes = shared_bytes(p, DP, true);
  auto kernel = backward_round_kernel<T, C, DP>;
  allow_shared(kernel, bytes);
  const auto blocks = static_cast<unsigned>(round_blocks(p));
  for (int64_t r = 0; r < p.n_hashes; ++r) {
    kernel<<<blocks, kBlock, bytes, stream>>>(p, r, static_cast<const T*>(q),
                                              static_cast<const T*>(k), static_cast<const T*>(v),
                                              grad, dout_out, max_logit, log_denom, dq, dk, dv);
    RW_CUDA_CHECK_LAUNCH();
  }
}

// Calls f.template operator()<T, C, DP>() for the call's dtype, chunk length and padded d_head
// (the host checked chunk_attention_compiled_for).
template <typename F>
void dispatch(const Params& p, F&& f) {
  const int dp = chunk_attention_padded_d(p.d);
  auto by_shape = [&]<typename T>() {
    if (p.chunk_len == 32) {
      if (dp == 32) return f.template operator()<T, 32, 32>();
      if (dp == 64) return f.template operator()<T, 32, 64>();
      return f.template operator()<T, 32, 128>();
    }
    if (p.chunk_len == 64) {
      if (dp == 32) return f.template operator()<T, 64, 32>();
      if (dp == 64) return f.template operator()<T, 64, 64>();
      return f.template operator()<T, 64, 128>();
    }
    return f.template operator()<T, 128, 32>();
  };
  switch (p.dtype) {
    case DType::f32:
      return by_shape.template operator()<float>();
    case DType::bf16:
      return by_shape.template operator()<__nv_bfloat16>();
    case DType::f16:
      return by_shape.template operator()<__half>();
    default:
      unsupported_dtype("chunk_attention", p.dtype);
  }
}

}  // namespace

int64_t chunk_attention_max_shared_bytes(int device) {
  int bytes = 0;
  RW_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return bytes;
}

void launch_chunk_attention_forward(const Params& p, const void* q, const void* k, const void* v,
                                    float* acc, float* run_max, float* run_denom, float* log_denom,
                                    cudaStream_t stream) {
  const int64_t tokens = p.batch_heads * p.length;
  if (tokens == 0 || p.d == 0) return;
  dispatch(p, [&]<typename T, int C, int DP>() {
    forward_typed<T, C, DP>(p, q, k, v, acc, run_max, run_denom, stream);
  });
  finalize_kernel<<<grid_for(tokens * p.d), kThreads, 0, stream>>>(
      acc, run_max, run_denom, log_denom, tokens, p.d, p.masked_penalty / 2);
  RW_CUDA_CHECK_LAUNCH();
}

void launch_chunk_attention_backward(const Params& p, const void* q, const void* k, const void* v,
                                     const void* out, const void* dout, const float* max_logit,
                                     const float* log_denom, float* grad, float* dout_out,
                                     float* dq, float* dk, float* dv, cudaStream_t stream) {
  const int64_t tokens = p.batch_heads * p.length;
  if (tokens == 0 || p.d == 0) return;
  const float no_key = p.masked_penalty / 2;
  const unsigned prepare_blocks = grid_for(tokens * 32);
  switch (p.dtype) {
    case DType::f32:
      backward_prepare_kernel<float><<<prepare_blocks, kThreads, 0, stream>>>(
          static_cast<const float*>(out), static_cast<const float*>(dout), max_logit, log_denom,
          grad, dout_out, tokens, p.d, no_key);
      break;
    case DType::bf16:
      backward_prepare_kernel<__nv_bfloat16><<<prepare_blocks, kThreads, 0, stream>>>(
          static_cast<const __nv_bfloat16*>(out), static_cast<const __nv_bfloat16*>(dout),
          max_logit, log_denom, grad, dout_out, tokens, p.d, no_key);
      break;
    case DType::f16:
      backward_prepare_kernel<__half><<<prepare_blocks, kThreads, 0, stream>>>(
          static_cast<const __half*>(out), static_cast<const __half*>(dout), max_logit, log_denom,
          grad, dout_out, tokens, p.d, no_key);
      break;
    default:
      unsupported_dtype("chunk_attention backward", p.dtype);
  }
  RW_CUDA_CHECK_LAUNCH();
  dispatch(p, [&]<typename T, int C, int DP>() {
    backward_typed<T, C, DP>(p, q, k, v, grad, dout_out, max_logit, log_denom, dq, dk, dv, stream);
  });
}

}  // namespace rw::cuda
