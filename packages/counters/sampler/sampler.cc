// The interrupt sampler: a stack sampler that does not use V8's CPU profiler.
//
// A timer thread asks V8 to interrupt the JavaScript thread (Isolate::RequestInterrupt) every
// `intervalMicros` on average (uniform jitter of ±50%, so that samples never fall in lock-step with periodic
// work). V8 runs the interrupt at the JavaScript thread's next safe point (a function entry or a loop's back
// edge), where the thread's stack and AsyncLocalStorage are as the running code sees them: the callback given
// to start() is called there with the thread CPU time spent since the previous sample, and reads both from
// JavaScript (packages/agent/src/profile/interrupt-recorder.ts).
//
// Why not V8's CpuProfiler (what @datadog/pprof drives): from V8 12 on (Node 22, 24) a profile that is
// running costs a Node.js service ~2% even at 1 sample a second, and a profiler stopped between windows
// loses track of code compiled by on-stack replacement (docs/agent.md, "Profiler"). An interrupt costs
// nothing until it is taken and puts V8 in no profiling mode. The price: a sample lands at the next safe
// point, not at the instruction the timer fired on (docs/agent.md, "The interrupt sampler").
//
// Built against V8's C++ API (not N-API: interrupts are not in N-API), so the build is for one Node.js ABI;
// scripts/build-native.js builds it for the Node.js that runs it.
#include <node.h>
#include <v8.h>

#include <time.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <random>
#include <thread>

namespace {

int64_t ThreadCpuNanos() {
  timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// One per isolate (the main thread's, or a worker's) that loaded the addon.
struct Sampler {
  v8::Isolate* isolate = nullptr;
  v8::Global<v8::Context> context;
  v8::Global<v8::Function> onSample;
  // Timer thread state, guarded by `mutex`.
  std::mutex mutex;
  std::condition_variable wake;
  bool running = false;
  int64_t intervalMicros = 10000;
  std::thread timer;
  // An interrupt requested and not yet run: at most one at a time.
  std::atomic<bool> pending{false};
  // Read by the interrupt on the JavaScript thread; false after stop() (a pending interrupt then does nothing).
  std::atomic<bool> enabled{false};
  // Thread CPU time at the end of the previous sample (or start()), ns. JavaScript thread only.
  int64_t lastCpuNanos = 0;
  uint64_t samples = 0;
};

void OnInterrupt(v8::Isolate* isolate, void* data) {
  auto* s = static_cast<Sampler*>(data);
  if (s->enabled.load(std::memory_order_acquire)) {
    int64_t cpuNanos = ThreadCpuNanos() - s->lastCpuNanos;
    v8::HandleScope scope(isolate);
    v8::Local<v8::Context> context = s->context.Get(isolate);
    v8::Context::Scope contextScope(context);
    v8::TryCatch tryCatch(isolate);
    v8::Local<v8::Value> argv[] = {v8::Number::New(isolate, static_cast<double>(cpuNanos))};
    // The callback never throws; if it did, the exception is dropped here, never seen by the app.
    if (s->onSample.Get(isolate)->Call(context, v8::Undefined(isolate), 1, argv).IsEmpty()) tryCatch.Reset();
    s->samples++;
    // The sample's own cost is not charged to the next one.
    s->lastCpuNanos = ThreadCpuNanos();
  }
  // Cleared last: a request made while the callback ran would nest an interrupt inside it.
  s->pending.store(false, std::memory_order_release);
}

void TimerLoop(Sampler* s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> jitter(0.5, 1.5);
  std::unique_lock<std::mutex> lock(s->mutex);
  while (s->running) {
    auto wait = std::chrono::microseconds(static_cast<int64_t>(static_cast<double>(s->intervalMicros) * jitter(rng)));
    if (s->wake.wait_for(lock, wait, [s] { return !s->running; })) break;
    if (!s->pending.exchange(true, std::memory_order_acq_rel)) s->isolate->RequestInterrupt(OnInterrupt, s);
  }
}

void StopTimer(Sampler* s) {
  {
    std::lock_guard<std::mutex> lock(s->mutex);
    s->running = false;
  }
  s->wake.notify_all();
  if (s->timer.joinable()) s->timer.join();
}

Sampler* From(const v8::FunctionCallbackInfo<v8::Value>& args) {
  return static_cast<Sampler*>(args.Data().As<v8::External>()->Value());
}

void ThrowType(v8::Isolate* isolate, const char* message) {
  isolate->ThrowException(v8::Exception::TypeError(v8::String::NewFromUtf8(isolate, message).ToLocalChecked()));
}

// start(intervalMicros, onSample(cpuNanos)): starts sampling; a running sampler is restarted with the new
// settings.
void Start(const v8::FunctionCallbackInfo<v8::Value>& args) {
  v8::Isolate* isolate = args.GetIsolate();
  Sampler* s = From(args);
  if (args.Length() < 2 || !args[0]->IsNumber() || !args[1]->IsFunction()) {
    ThrowType(isolate, "start(intervalMicros: number, onSample: function)");
    return;
  }
  double interval = args[0].As<v8::Number>()->Value();
  if (!(interval >= 100 && interval <= 60e6)) {
    ThrowType(isolate, "intervalMicros must be between 100 and 60,000,000");
    return;
  }
  StopTimer(s);
  s->onSample.Reset(isolate, args[1].As<v8::Function>());
  s->context.Reset(isolate, isolate->GetCurrentContext());
  s->lastCpuNanos = ThreadCpuNanos();
  s->enabled.store(true, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(s->mutex);
    s->intervalMicros = static_cast<int64_t>(interval);
    s->running = true;
  }
  uint64_t seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                  reinterpret_cast<uintptr_t>(s);
  s->timer = std::thread(TimerLoop, s, seed);
}

// stop(): no sample after it returns (a pending interrupt finds the sampler disabled). Idempotent.
void Stop(const v8::FunctionCallbackInfo<v8::Value>& args) {
  Sampler* s = From(args);
  s->enabled.store(false, std::memory_order_release);
  StopTimer(s);
  s->onSample.Reset();
}

// samples(): how many samples were taken since the addon loaded (for tests and diagnostics).
void Samples(const v8::FunctionCallbackInfo<v8::Value>& args) {
  args.GetReturnValue().Set(static_cast<double>(From(args)->samples));
}

// threadCpuNanos(): the calling thread's CPU time, ns (the clock the samples are weighted by).
void ThreadCpu(const v8::FunctionCallbackInfo<v8::Value>& args) {
  args.GetReturnValue().Set(static_cast<double>(ThreadCpuNanos()));
}

// hasContinuationData(): whether V8's continuation-preserved embedder data is set in the running code. Node.js
// keeps its AsyncContextFrame there (Node 24; Node 22 with --experimental-async-context-frame): called inside
// AsyncLocalStorage.run(), true exactly when AsyncLocalStorage is backed by it. False on V8 < 12 (Node 20).
void HasContinuationData(const v8::FunctionCallbackInfo<v8::Value>& args) {
#if V8_MAJOR_VERSION >= 12
  v8::Isolate* isolate = args.GetIsolate();
  v8::Local<v8::Value> data = isolate->GetContinuationPreservedEmbedderData();
  args.GetReturnValue().Set(!data->IsUndefined());
#else
  args.GetReturnValue().Set(false);
#endif
}

void Cleanup(void* data) {
  auto* s = static_cast<Sampler*>(data);
  s->enabled.store(false, std::memory_order_release);
  StopTimer(s);
  s->onSample.Reset();
  s->context.Reset();
  // An interrupt requested and never run still points here: keep the few bytes rather than risk it.
  if (!s->pending.load(std::memory_order_acquire)) delete s;
}

void Set(v8::Local<v8::Object> exports, v8::Local<v8::Context> context, const char* name,
         v8::FunctionCallback fn, v8::Local<v8::External> data) {
  v8::Isolate* isolate = context->GetIsolate();
  v8::Local<v8::Function> f = v8::FunctionTemplate::New(isolate, fn, data)->GetFunction(context).ToLocalChecked();
  v8::Local<v8::String> key = v8::String::NewFromUtf8(isolate, name).ToLocalChecked();
  f->SetName(key);
  exports->Set(context, key, f).Check();
}

}  // namespace

NODE_MODULE_INIT(/* exports, module, context */) {
  v8::Isolate* isolate = context->GetIsolate();
  auto* s = new Sampler();
  s->isolate = isolate;
  node::AddEnvironmentCleanupHook(isolate, Cleanup, s);
  v8::Local<v8::External> data = v8::External::New(isolate, s);
  Set(exports, context, "start", Start, data);
  Set(exports, context, "stop", Stop, data);
  Set(exports, context, "samples", Samples, data);
  Set(exports, context, "threadCpuNanos", ThreadCpu, data);
  Set(exports, context, "hasContinuationData", HasContinuationData, data);
}
