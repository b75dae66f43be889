// The interrupt sampler: a stack sampler that does not use V8's CPU profiler.
//
// A timer thread asks V8 to interrupt the JavaScript thread (Isolate::RequestInterrupt) every `intervalMicros` on
// average (uniform jitter of ±50%, so that samples never fall in lock-step with periodic work). V8 runs the
// interrupt at the JavaScript thread's next safe point (a function entry or a loop's back edge). There, without
// running any JavaScript (V8 does not allow calling into JavaScript from an interrupt: it may run in the middle of
// anything), the interrupt records the thread CPU time since the previous sample, an Error made there (V8 captures
// its stack from the interrupted frame down, inlined frames included; it is formatted later) and what tells the
// running request: either the continuation-preserved embedder data, where Node.js keeps the AsyncLocalStorage frame
// of the running code (AsyncContextFrame: Node 24), or, given a label slot, the value in its element 0, which the
// agent keeps current from an async_hooks `before` hook (Node 20). drain(), called from ordinary JavaScript, hands
// the samples over (packages/agent/src/profile/interrupt-recorder.ts reads the stacks there, through
// Error.prepareStackTrace, and the request's labels from the frame or slot value).
//
// Why not V8's CpuProfiler (what @datadog/pprof drives): from V8 12 on (Node 22, 24) a profile that is running
// costs a Node.js service ~2% even at 1 sample a second, and a profiler stopped between windows loses track of
// code compiled by on-stack replacement (docs/agent.md, "Profiler"). An interrupt costs nothing until it is taken
// and puts V8 in no profiling mode. The price: a sample lands at the next safe point, not at the instruction the
// timer fired on (docs/agent.md, "The interrupt sampler").
//
// Needs V8 11 (Node 20) for the stack captured in the interrupt; the embedder data is read on V8 13 (Node 24) only.
// Built against an older V8 it compiles to a stub whose supported() is false. Built against V8's C++ API (not
// N-API: interrupts are not in N-API), so the build is for one Node.js ABI; scripts/build-native.js builds it for
// the Node.js that runs it.
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
#include <vector>

#if V8_MAJOR_VERSION >= 11
#define ERGOMETER_SAMPLER_SUPPORTED 1
#else
#define ERGOMETER_SAMPLER_SUPPORTED 0
#endif
// The continuation-preserved embedder data (where Node.js keeps AsyncContextFrame).
#if V8_MAJOR_VERSION >= 13
#define ERGOMETER_SAMPLER_CPED 1
#else
#define ERGOMETER_SAMPLER_CPED 0
#endif

namespace {

int64_t ThreadCpuNanos() {
  timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// Frames captured per sample: Error.stackTraceLimit is raised to this for the capture when the app's is lower.
constexpr int kStackFrames = 128;

// One sample, waiting for drain(): JavaScript thread only.
struct Sample {
  v8::Global<v8::Object> stack;    // an object whose `stack` V8 formats on first read
  v8::Global<v8::Value> frame;     // the label slot's element 0, else the embedder data (AsyncContextFrame), or undefined
  double cpuNanos;
};

// One per isolate (the main thread's, or a worker's) that loaded the addon.
struct Sampler {
  v8::Isolate* isolate = nullptr;
  v8::Global<v8::Context> context;
  v8::Global<v8::Object> errorConstructor;
  // Given to start(): an Array whose element 0 is recorded with each sample instead of the embedder data.
  v8::Global<v8::Array> labelSlot;
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
  // JavaScript thread only.
  int64_t lastCpuNanos = 0;
  uint64_t samples = 0;
  uint64_t dropped = 0;
  // Thread CPU spent inside the interrupt (the sampler's own cost on the JavaScript thread), ns.
  double interruptNanos = 0;
  size_t maxPending = 0;
  std::vector<Sample> waiting;
};

#if ERGOMETER_SAMPLER_SUPPORTED
// What tells the running request: the label slot's element 0 (an element of an Array the agent made: reading it
// runs no JavaScript), else the embedder data, else undefined.
v8::Local<v8::Value> RunningContext(Sampler* s, v8::Isolate* isolate, v8::Local<v8::Context> context) {
  if (!s->labelSlot.IsEmpty()) {
    v8::Local<v8::Value> value;
    if (s->labelSlot.Get(isolate)->Get(context, 0).ToLocal(&value)) return value;
    return v8::Undefined(isolate);
  }
#if ERGOMETER_SAMPLER_CPED
  return isolate->GetContinuationPreservedEmbedderData();
#else
  return v8::Undefined(isolate);
#endif
}

// Raises Error.stackTraceLimit to kStackFrames for one capture when it is a lower number in a writable data property
// (the only kind V8 itself reads: an accessor is never called here). Returns the value to put back, if it changed.
bool RaiseStackTraceLimit(v8::Isolate* isolate, v8::Local<v8::Context> context, v8::Local<v8::Object> error,
                          v8::Local<v8::String> key, v8::Local<v8::Value>* previous) {
  v8::Local<v8::Value> descriptor;
  if (!error->GetOwnPropertyDescriptor(context, key).ToLocal(&descriptor) || !descriptor->IsObject()) return false;
  v8::Local<v8::Object> d = descriptor.As<v8::Object>();
  v8::Local<v8::Value> value;
  v8::Local<v8::Value> writable;
  if (!d->Get(context, v8::String::NewFromUtf8Literal(isolate, "value")).ToLocal(&value) || !value->IsNumber()) return false;
  if (!d->Get(context, v8::String::NewFromUtf8Literal(isolate, "writable")).ToLocal(&writable) || !writable->IsTrue()) return false;
  if (value.As<v8::Number>()->Value() >= kStackFrames) return false;
  if (!error->Set(context, key, v8::Number::New(isolate, kStackFrames)).FromMaybe(false)) return false;
  *previous = value;
  return true;
}
#endif

void OnInterrupt(v8::Isolate* isolate, void* data) {
  auto* s = static_cast<Sampler*>(data);
#if ERGOMETER_SAMPLER_SUPPORTED
  if (s->enabled.load(std::memory_order_acquire)) {
    int64_t entered = ThreadCpuNanos();
    double cpuNanos = static_cast<double>(entered - s->lastCpuNanos);
    if (s->waiting.size() >= s->maxPending) {
      s->dropped++;
    } else {
      v8::HandleScope scope(isolate);
      v8::Local<v8::Context> context = s->context.Get(isolate);
      v8::Context::Scope contextScope(context);
      v8::TryCatch tryCatch(isolate);
      v8::Local<v8::Object> error = s->errorConstructor.Get(isolate);
      v8::Local<v8::String> limitKey = v8::String::NewFromUtf8Literal(isolate, "stackTraceLimit");
      v8::Local<v8::Value> limit;
      bool raised = RaiseStackTraceLimit(isolate, context, error, limitKey, &limit);
      // An Error made here captures the stack from the interrupted frame down (Exception::CaptureStackTrace would
      // skip that frame: it expects to be called from an API function).
      v8::Local<v8::Value> made = v8::Exception::Error(v8::String::Empty(isolate));
      bool captured = made->IsObject();
      v8::Local<v8::Object> holder = captured ? made.As<v8::Object>() : v8::Object::New(isolate);
      if (raised) (void)error->Set(context, limitKey, limit).FromMaybe(false);
      if (captured) {
        s->waiting.push_back(Sample{v8::Global<v8::Object>(isolate, holder),
                                    v8::Global<v8::Value>(isolate, RunningContext(s, isolate, context)), cpuNanos});
        s->samples++;
      }
      // Nothing of the sampler's ever reaches the interrupted code; a termination (worker.terminate()) goes on.
      if (tryCatch.HasTerminated()) {
        tryCatch.ReThrow();
      } else if (tryCatch.HasCaught()) {
        tryCatch.Reset();
      }
    }
    // The sample's own cost is not charged to the next one.
    s->lastCpuNanos = ThreadCpuNanos();
    s->interruptNanos += static_cast<double>(s->lastCpuNanos - entered);
  }
#else
  (void)isolate;
#endif
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

// supported(): whether this build can sample (V8 11+: Node 20 on).
void Supported(const v8::FunctionCallbackInfo<v8::Value>& args) {
  args.GetReturnValue().Set(ERGOMETER_SAMPLER_SUPPORTED == 1);
}

// start(intervalMicros, maxWaiting, Error[, labelSlot]): starts sampling; samples beyond maxWaiting not yet drained
// are dropped (counted by dropped()). With `labelSlot` (an Array), each sample records its element 0 instead of the
// embedder data. A running sampler is restarted with the new settings; waiting samples are kept.
void Start(const v8::FunctionCallbackInfo<v8::Value>& args) {
  v8::Isolate* isolate = args.GetIsolate();
  Sampler* s = From(args);
  if (!ERGOMETER_SAMPLER_SUPPORTED) {
    isolate->ThrowException(v8::Exception::Error(
        v8::String::NewFromUtf8Literal(isolate, "the interrupt sampler needs V8 11 (Node.js 20) or later")));
    return;
  }
  if (args.Length() < 3 || !args[0]->IsNumber() || !args[1]->IsNumber() || !args[2]->IsFunction() ||
      (args.Length() > 3 && !args[3]->IsUndefined() && !args[3]->IsArray())) {
    ThrowType(isolate, "start(intervalMicros: number, maxWaiting: number, Error: function, labelSlot?: unknown[])");
    return;
  }
  double interval = args[0].As<v8::Number>()->Value();
  double maxWaiting = args[1].As<v8::Number>()->Value();
  if (!(interval >= 100 && interval <= 60e6)) {
    ThrowType(isolate, "intervalMicros must be between 100 and 60,000,000");
    return;
  }
  if (!(maxWaiting >= 1 && maxWaiting <= 1e7)) {
    ThrowType(isolate, "maxWaiting must be between 1 and 10,000,000");
    return;
  }
  StopTimer(s);
  s->context.Reset(isolate, isolate->GetCurrentContext());
  s->errorConstructor.Reset(isolate, args[2].As<v8::Object>());
  if (args.Length() > 3 && args[3]->IsArray()) {
    s->labelSlot.Reset(isolate, args[3].As<v8::Array>());
  } else {
    s->labelSlot.Reset();
  }
  s->maxPending = static_cast<size_t>(maxWaiting);
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

// stop(): no sample after it returns (a pending interrupt finds the sampler disabled). Waiting samples stay for
// drain(). Idempotent.
void Stop(const v8::FunctionCallbackInfo<v8::Value>& args) {
  Sampler* s = From(args);
  s->enabled.store(false, std::memory_order_release);
  StopTimer(s);
}

// drain(): the samples taken since the last drain, as [stackHolder, frame, cpuNanos, stackHolder, frame, …].
void Drain(const v8::FunctionCallbackInfo<v8::Value>& args) {
  v8::Isolate* isolate = args.GetIsolate();
  Sampler* s = From(args);
  std::vector<v8::Local<v8::Value>> flat;
  flat.reserve(s->waiting.size() * 3);
  for (Sample& sample : s->waiting) {
    flat.push_back(sample.stack.Get(isolate));
    flat.push_back(sample.frame.Get(isolate));
    flat.push_back(v8::Number::New(isolate, sample.cpuNanos));
  }
  s->waiting.clear();
  args.GetReturnValue().Set(v8::Array::New(isolate, flat.data(), flat.size()));
}

// samples(), dropped(): samples taken, and dropped for want of a drain, since the addon loaded in this thread.
void Samples(const v8::FunctionCallbackInfo<v8::Value>& args) {
  args.GetReturnValue().Set(static_cast<double>(From(args)->samples));
}
void Dropped(const v8::FunctionCallbackInfo<v8::Value>& args) {
  args.GetReturnValue().Set(static_cast<double>(From(args)->dropped));
}

// threadCpuNanos(): the calling thread's CPU time, ns (the clock the samples are weighted by).
// interruptNanos(): thread CPU spent inside the interrupts since the addon loaded in this thread, ns.
void InterruptNanos(const v8::FunctionCallbackInfo<v8::Value>& args) {
  args.GetReturnValue().Set(From(args)->interruptNanos);
}

void ThreadCpu(const v8::FunctionCallbackInfo<v8::Value>& args) {
  args.GetReturnValue().Set(static_cast<double>(ThreadCpuNanos()));
}

// hasContinuationData(): whether V8's continuation-preserved embedder data is set in the running code. Node.js
// keeps its AsyncContextFrame there (Node 24; Node 22 with --experimental-async-context-frame): called inside
// AsyncLocalStorage.run(), true exactly when AsyncLocalStorage is backed by it. False where this build cannot
// read it (V8 before 13).
void HasContinuationData(const v8::FunctionCallbackInfo<v8::Value>& args) {
#if ERGOMETER_SAMPLER_CPED
  args.GetReturnValue().Set(!args.GetIsolate()->GetContinuationPreservedEmbedderData()->IsUndefined());
#else
  args.GetReturnValue().Set(false);
#endif
}

void Cleanup(void* data) {
  auto* s = static_cast<Sampler*>(data);
  s->enabled.store(false, std::memory_order_release);
  StopTimer(s);
  s->waiting.clear();
  s->context.Reset();
  s->errorConstructor.Reset();
  s->labelSlot.Reset();
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
  Set(exports, context, "supported", Supported, data);
  Set(exports, context, "start", Start, data);
  Set(exports, context, "stop", Stop, data);
  Set(exports, context, "drain", Drain, data);
  Set(exports, context, "samples", Samples, data);
  Set(exports, context, "dropped", Dropped, data);
  Set(exports, context, "threadCpuNanos", ThreadCpu, data);
  Set(exports, context, "interruptNanos", InterruptNanos, data);
  Set(exports, context, "hasContinuationData", HasContinuationData, data);
}
