#include "recmod/io/torch_pickle.h"

#include <torch/torch.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "recmod/common/errors.h"

namespace recmod::io {

namespace {

enum class Kind { kNone, kBool, kInt, kFloat, kString, kBytes, kTuple, kList, kDict, kGlobal, kStorage, kTensor };

/// "an int", "a Tensor", ...: how a value's kind appears in messages.
const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kNone: return "None";
    case Kind::kBool: return "a bool";
    case Kind::kInt: return "an int";
    case Kind::kFloat: return "a float";
    case Kind::kString: return "a str";
    case Kind::kBytes: return "a bytes object";
    case Kind::kTuple: return "a tuple";
    case Kind::kList: return "a list";
    case Kind::kDict: return "a dict";
    case Kind::kGlobal: return "a class or function";
    case Kind::kStorage: return "a storage";
    case Kind::kTensor: return "a Tensor";
  }
  return "?";
}

/// One Python object. All values live in the interpreter's arena and refer to
/// each other by plain pointers, so cycles and deep nesting (which the memo
/// allows) cost neither leaks nor recursion.
struct Value {
  explicit Value(Kind k) : kind(k) {}
  Kind kind;
  int64_t integer = 0;  // kBool, kInt
  double real = 0;      // kFloat
  std::string text;     // kString, kBytes, kGlobal ("module.name")
  std::vector<Value*> items;  // kTuple, kList; kDict: key, value, key, value, ...
  std::unordered_map<std::string, size_t> string_keys;  // kDict: str key -> index of the key in items
  c10::Storage storage;                                 // kStorage
  c10::ScalarType dtype = c10::ScalarType::Undefined;   // kStorage: element type; kGlobal: a torch dtype
  torch::Tensor tensor;                                 // kTensor
};

/// torch.<Name>Storage -> element type.
const std::unordered_map<std::string, c10::ScalarType>& storage_types() {
  static const std::unordered_map<std::string, c10::ScalarType> types = {
      {"torch.DoubleStorage", c10::kDouble},        {"torch.FloatStorage", c10::kFloat},
      {"torch.HalfStorage", c10::kHalf},            {"torch.BFloat16Storage", c10::kBFloat16},
      {"torch.LongStorage", c10::kLong},            {"torch.IntStorage", c10::kInt},
      {"torch.ShortStorage", c10::kShort},          {"torch.CharStorage", c10::kChar},
      {"torch.ByteStorage", c10::kByte},            {"torch.BoolStorage", c10::kBool},
      {"torch.ComplexFloatStorage", c10::kComplexFloat}, {"torch.ComplexDoubleStorage", c10::kComplexDouble},
      {"torch.UntypedStorage", c10::kByte},  // torch 2.x, with _rebuild_tensor_v3 naming the dtype
  };
  return types;
}

/// torch.<dtype> -> element type (the dtype argument of _rebuild_tensor_v3).
const std::unordered_map<std::string, c10::ScalarType>& dtype_globals() {
  static const std::unordered_map<std::string, c10::ScalarType> types = {
      {"torch.float64", c10::kDouble},  {"torch.float32", c10::kFloat},       {"torch.float16", c10::kHalf},
      {"torch.bfloat16", c10::kBFloat16}, {"torch.int64", c10::kLong},        {"torch.int32", c10::kInt},
      {"torch.int16", c10::kShort},     {"torch.int8", c10::kChar},           {"torch.uint8", c10::kByte},
      {"torch.bool", c10::kBool},       {"torch.complex64", c10::kComplexFloat},
      {"torch.complex128", c10::kComplexDouble},
  };
  return types;
}

/// Callables the pickle may name besides the storage types and dtypes.
bool is_known_function(const std::string& name) {
  static const char* const kNames[] = {
      "collections.OrderedDict",
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_tensor_v3",
      "torch._utils._rebuild_parameter",
      "torch._utils._rebuild_parameter_with_state",
      // libtorch's pickler (torch::pickle_save) tags typed containers with these.
      "torch.jit._pickle.restore_type_tag",
      "torch.jit._pickle.build_intlist",
      "torch.jit._pickle.build_doublelist",
      "torch.jit._pickle.build_boollist",
      "torch.jit._pickle.build_tensorlist",
  };
  for (const char* known : kNames)
    if (name == known) return true;
  return false;
}

std::string hex_byte(uint8_t byte) {
  const char* digits = "0123456789abcdef";
  return std::string("0x") + digits[byte >> 4] + digits[byte & 15];
}

class Unpickler {
 public:
  Unpickler(std::string_view data, const StorageRecordReader& read_storage, const std::string& origin)
      : data_(data), read_storage_(read_storage), origin_(origin) {}

  Value* run();

 private:
  template <typename... Args>
  [[noreturn]] void fail(const Args&... args) const {
    throw CheckpointError(str_cat(origin_, ": data.pkl: ", args..., " (at byte ", op_pos_, ")"));
  }

  // Bounds-checked reading of the pickle.
  std::string_view take(uint64_t n) {
    if (n > data_.size() - pos_) fail("truncated pickle: needs ", n, " more bytes, ", data_.size() - pos_, " left");
    std::string_view out = data_.substr(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return out;
  }
  uint64_t little_endian(int bytes) {
    const std::string_view raw = take(static_cast<uint64_t>(bytes));
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(raw[static_cast<size_t>(i)]);
    return v;
  }
  std::string line() {
    const size_t end = data_.find('\n', pos_);
    if (end == std::string_view::npos) fail("truncated pickle: GLOBAL without its newline");
    std::string out(data_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return out;
  }

  Value* make(Kind kind) {
    arena_.push_back(std::make_unique<Value>(kind));
    return arena_.back().get();
  }
  Value* make_int(int64_t v, Kind kind = Kind::kInt) {
    Value* out = make(kind);
    out->integer = v;
    return out;
  }
  Value* make_text(Kind kind, std::string_view text) {
    Value* out = make(kind);
    out->text = std::string(text);
    return out;
  }

  // The stack; a MARK hides what is below it, as in Python's unpickler.
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(Value* v) { stack_.push_back(v); }
  Value* pop() {
    if (stack_.size() <= floor()) fail("pickle stack underflow");
    Value* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value* top() {
    if (stack_.size() <= floor()) fail("pickle stack underflow");
    return stack_.back();
  }
  std::vector<Value*> pop_mark() {
    if (marks_.empty()) fail("pickle opcode needs a MARK, none is open");
    const auto first = stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back());
    std::vector<Value*> items(first, stack_.end());
    stack_.erase(first, stack_.end());
    marks_.pop_back();
    return items;
  }
  Value* tuple(std::vector<Value*> items) {
    Value* out = make(Kind::kTuple);
    out->items = std::move(items);
    return out;
  }

  void memo_put(uint64_t index) { memo_[index] = top(); }
  Value* memo_get(uint64_t index) {
    const auto it = memo_.find(index);
    if (it == memo_.end()) fail("memo entry ", index, " was never stored");
    return it->second;
  }

  void set_item(Value* dict, Value* key, Value* value);
  void set_items(Value* dict, const std::vector<Value*>& items);
  void append(Value* list, const std::vector<Value*>& items);
  Value* global(const std::string& module, const std::string& name);
  Value* reduce(Value* callable, Value* args);
  Value* persistent_load(Value* pid);
  Value* rebuild_tensor(const std::vector<Value*>& args, bool v3);

  int64_t int_arg(const Value* v, const char* what) {
    if (v->kind != Kind::kInt && v->kind != Kind::kBool) fail(what, " must be an int, got ", kind_name(v->kind));
    return v->integer;
  }
  std::vector<int64_t> int_tuple_arg(const Value* v, const char* what) {
    if (v->kind != Kind::kTuple && v->kind != Kind::kList)
      fail(what, " must be a tuple of ints, got ", kind_name(v->kind));
    std::vector<int64_t> out;
    for (const Value* item : v->items) out.push_back(int_arg(item, what));
    return out;
  }

  std::string_view data_;
  const StorageRecordReader& read_storage_;
  const std::string& origin_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;  // where the current opcode starts, for messages
  std::vector<std::unique_ptr<Value>> arena_;
  std::vector<Value*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value*> memo_;
  std::unordered_map<std::string, Value*> storages_;  // by record key, so views share their storage
};

void Unpickler::set_item(Value* dict, Value* key, Value* value) {
  if (dict->kind != Kind::kDict) fail("SETITEM(S) on ", kind_name(dict->kind), ", not a dict");
  if (key->kind == Kind::kString) {
    const auto [it, inserted] = dict->string_keys.emplace(key->text, dict->items.size());
    if (!inserted) {  // Python keeps the first position and takes the new value
      dict->items[it->second + 1] = value;
      return;
    }
  }
  dict->items.push_back(key);
  dict->items.push_back(value);
}

void Unpickler::set_items(Value* dict, const std::vector<Value*>& items) {
  if (items.size() % 2 != 0) fail("SETITEMS with an odd number of items (", items.size(), ")");
  for (size_t i = 0; i < items.size(); i += 2) set_item(dict, items[i], items[i + 1]);
}

void Unpickler::append(Value* list, const std::vector<Value*>& items) {
  if (list->kind != Kind::kList) fail("APPEND(S) on ", kind_name(list->kind), ", not a list");
  list->items.insert(list->items.end(), items.begin(), items.end());
}

Value* Unpickler::global(const std::string& module, const std::string& name) {
  const std::string full = module + "." + name;
  Value* out = make_text(Kind::kGlobal, full);
  if (const auto it = storage_types().find(full); it != storage_types().end()) {
    out->dtype = it->second;
  } else if (const auto dt = dtype_globals().find(full); dt != dtype_globals().end()) {
    out->dtype = dt->second;
  } else if (!is_known_function(full)) {
    fail("unsupported object '", full,
         "': recmod reads dicts of tensors, as torch.save(model.state_dict(), path) writes them");
  }
  return out;
}

Value* Unpickler::persistent_load(Value* pid) {
  // torch.save's persistent id of a storage: ('storage', torch.<Type>Storage, key, location, numel).
  if (pid->kind != Kind::kTuple || pid->items.size() != 5 || pid->items[0]->kind != Kind::kString ||
      pid->items[0]->text != "storage")
    fail("unsupported persistent id (expected ('storage', type, key, location, numel))");
  const Value* type = pid->items[1];
  const Value* key = pid->items[2];
  if (type->kind != Kind::kGlobal || storage_types().count(type->text) == 0)
    fail("persistent id names an unknown storage type");
  if (key->kind != Kind::kString) fail("storage key must be a str, got ", kind_name(key->kind));
  if (pid->items[3]->kind != Kind::kString) fail("storage location must be a str");
  const int64_t numel = int_arg(pid->items[4], "storage size");
  const int64_t item_size = static_cast<int64_t>(c10::elementSize(type->dtype));
  int64_t nbytes = 0;
  if (numel < 0 || __builtin_mul_overflow(numel, item_size, &nbytes))
    fail("storage '", key->text, "' has an impossible size ", numel);

  auto [it, inserted] = storages_.emplace(key->text, nullptr);
  if (!inserted) {
    if (static_cast<int64_t>(it->second->storage.nbytes()) != nbytes)
      fail("storage '", key->text, "' is named twice with different sizes");
    if (it->second->dtype == type->dtype) return it->second;
    Value* retyped = make(Kind::kStorage);  // the same bytes seen as another type
    retyped->storage = it->second->storage;
    retyped->dtype = type->dtype;
    return retyped;
  }
  Value* out = make(Kind::kStorage);
  out->storage = read_storage_(key->text);
  out->dtype = type->dtype;
  if (static_cast<int64_t>(out->storage.nbytes()) != nbytes)
    fail("storage record data/", key->text, " holds ", out->storage.nbytes(), " bytes, the pickle expects ", numel,
         " x ", item_size, " = ", nbytes);
  it->second = out;
  return out;
}

Value* Unpickler::rebuild_tensor(const std::vector<Value*>& args, bool v3) {
  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  // _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype[, metadata])
  const size_t fixed = v3 ? 7 : 6;
  if (args.size() != fixed && args.size() != fixed + 1)
    fail("_rebuild_tensor_v", v3 ? 3 : 2, " expects ", fixed, " or ", fixed + 1, " arguments, got ", args.size());
  const Value* storage = args[0];
  if (storage->kind != Kind::kStorage) fail("a tensor's storage must be a persistent storage, got ", kind_name(storage->kind));
  c10::ScalarType dtype = storage->dtype;
  if (v3) {
    if (args[6]->kind != Kind::kGlobal || dtype_globals().count(args[6]->text) == 0)
      fail("_rebuild_tensor_v3 expects a torch dtype");
    dtype = args[6]->dtype;
  }
  const int64_t offset = int_arg(args[1], "storage offset");
  const std::vector<int64_t> sizes = int_tuple_arg(args[2], "tensor size");
  const std::vector<int64_t> strides = int_tuple_arg(args[3], "tensor stride");
  if (args.size() == fixed + 1) {
    const Value* metadata = args[fixed];
    if (!(metadata->kind == Kind::kNone || (metadata->kind == Kind::kDict && metadata->items.empty())))
      fail("tensors with metadata (conjugate/negative bits, ...) are not supported");
  }
  if (sizes.size() != strides.size())
    fail("tensor has ", sizes.size(), " sizes but ", strides.size(), " strides");
  const int64_t item_size = static_cast<int64_t>(c10::elementSize(dtype));
  const int64_t available = static_cast<int64_t>(storage->storage.nbytes()) / item_size;
  if (offset < 0) fail("negative storage offset ", offset);
  // The last element the tensor reaches must lie inside the storage.
  bool empty = false;
  int64_t last = offset;
  bool overflow = false;
  for (size_t d = 0; d < sizes.size(); ++d) {
    if (sizes[d] < 0 || strides[d] < 0)
      fail("tensor has a negative size or stride: size ", c10::IntArrayRef(sizes), ", stride ",
           c10::IntArrayRef(strides));
    if (sizes[d] == 0) empty = true;
    int64_t reach = 0;
    if (sizes[d] > 0) overflow |= __builtin_mul_overflow(sizes[d] - 1, strides[d], &reach);
    overflow |= __builtin_add_overflow(last, reach, &last);
  }
  if (overflow) fail("tensor size ", c10::IntArrayRef(sizes), " with stride ", c10::IntArrayRef(strides), " overflows");
  if (empty ? offset > available : last >= available)
    fail("tensor of size ", c10::IntArrayRef(sizes), ", stride ", c10::IntArrayRef(strides), " at offset ", offset,
         " reaches past its storage of ", available, " ", dtype, " elements");
  Value* out = make(Kind::kTensor);
  out->tensor = torch::empty({0}, torch::TensorOptions().dtype(dtype))
                    .set_(storage->storage, offset, sizes, strides);
  return out;
}

Value* Unpickler::reduce(Value* callable, Value* args) {
  if (callable->kind != Kind::kGlobal) fail("REDUCE on ", kind_name(callable->kind), ", not a callable");
  if (args->kind != Kind::kTuple) fail("REDUCE arguments must be a tuple, got ", kind_name(args->kind));
  const std::string& name = callable->text;
  const std::vector<Value*>& a = args->items;
  if (name == "collections.OrderedDict") {
    if (!a.empty()) fail("OrderedDict with constructor arguments is not supported");
    return make(Kind::kDict);
  }
  if (name == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(a, /*v3=*/false);
  if (name == "torch._utils._rebuild_tensor_v3") return rebuild_tensor(a, /*v3=*/true);
  if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
    const size_t want = name == "torch._utils._rebuild_parameter" ? 3 : 4;
    if (a.size() != want || a[0]->kind != Kind::kTensor) fail(name, " expects a tensor and ", want - 1, " more arguments");
    return a[0];
  }
  if (name.rfind("torch.jit._pickle.", 0) == 0) {
    if (a.empty()) fail(name, " without arguments");
    return a[0];
  }
  fail("'", name, "' cannot be called");
}

Value* Unpickler::run() {
  while (true) {
    op_pos_ = pos_;
    const auto op = static_cast<uint8_t>(take(1)[0]);
    switch (op) {
      case 0x80: {  // PROTO
        const auto protocol = static_cast<uint8_t>(take(1)[0]);
        if (protocol < 2 || protocol > 5) fail("unsupported pickle protocol ", int(protocol));
        break;
      }
      case 0x95: take(8); break;  // FRAME: a length hint only
      case '.': {  // STOP
        Value* result = pop();
        if (!marks_.empty()) fail("pickle ends with an open MARK");
        return result;
      }
      case '(': marks_.push_back(stack_.size()); break;  // MARK
      case '0': pop(); break;                            // POP
      case '1': pop_mark(); break;                       // POP_MARK
      case '2': push(top()); break;                      // DUP
      case 'N': push(make(Kind::kNone)); break;
      case 0x88: push(make_int(1, Kind::kBool)); break;  // NEWTRUE
      case 0x89: push(make_int(0, Kind::kBool)); break;  // NEWFALSE
      case 'J': push(make_int(static_cast<int32_t>(little_endian(4)))); break;  // BININT
      case 'K': push(make_int(static_cast<int64_t>(little_endian(1)))); break;  // BININT1
      case 'M': push(make_int(static_cast<int64_t>(little_endian(2)))); break;  // BININT2
      case 0x8a:    // LONG1
      case 0x8b: {  // LONG4
        const uint64_t n = little_endian(op == 0x8a ? 1 : 4);
        if (n > 8) fail("integer of ", n, " bytes does not fit in 64 bits");
        const int bytes = static_cast<int>(n);
        uint64_t v = little_endian(bytes);
        if (bytes > 0 && bytes < 8 && (v >> (8 * bytes - 1)) != 0) v |= ~uint64_t{0} << (8 * bytes);  // sign
        push(make_int(static_cast<int64_t>(v)));
        break;
      }
      case 'G': {  // BINFLOAT: big-endian double
        const std::string_view raw = take(8);
        uint64_t bits = 0;
        for (char c : raw) bits = (bits << 8) | static_cast<uint8_t>(c);
        Value* v = make(Kind::kFloat);
        std::memcpy(&v->real, &bits, sizeof bits);
        push(v);
        break;
      }
      case 'X': push(make_text(Kind::kString, take(little_endian(4)))); break;     // BINUNICODE
      case 0x8c: push(make_text(Kind::kString, take(little_endian(1)))); break;    // SHORT_BINUNICODE
      case 0x8d: push(make_text(Kind::kString, take(little_endian(8)))); break;    // BINUNICODE8
      case 'T': push(make_text(Kind::kString, take(little_endian(4)))); break;     // BINSTRING
      case 'U': push(make_text(Kind::kString, take(little_endian(1)))); break;     // SHORT_BINSTRING
      case 'B': push(make_text(Kind::kBytes, take(little_endian(4)))); break;      // BINBYTES
      case 'C': push(make_text(Kind::kBytes, take(little_endian(1)))); break;      // SHORT_BINBYTES
      case 0x8e: push(make_text(Kind::kBytes, take(little_endian(8)))); break;     // BINBYTES8
      case ')': push(tuple({})); break;                                           // EMPTY_TUPLE
      case 't': push(tuple(pop_mark())); break;                                   // TUPLE
      case 0x85:    // TUPLE1
      case 0x86:    // TUPLE2
      case 0x87: {  // TUPLE3
        std::vector<Value*> items(static_cast<size_t>(op - 0x84));
        for (auto it = items.rbegin(); it != items.rend(); ++it) *it = pop();
        push(tuple(std::move(items)));
        break;
      }
      case ']': push(make(Kind::kList)); break;  // EMPTY_LIST
      case 'l': {                                // LIST
        Value* list = make(Kind::kList);
        list->items = pop_mark();
        push(list);
        break;
      }
      case 'a': {  // APPEND
        Value* item = pop();
        append(top(), {item});
        break;
      }
      case 'e': {  // APPENDS
        const std::vector<Value*> items = pop_mark();
        append(top(), items);
        break;
      }
      case '}': push(make(Kind::kDict)); break;  // EMPTY_DICT
      case 'd': {                                // DICT
        Value* dict = make(Kind::kDict);
        set_items(dict, pop_mark());
        push(dict);
        break;
      }
      case 's': {  // SETITEM
        Value* value = pop();
        Value* key = pop();
        set_item(top(), key, value);
        break;
      }
      case 'u': {  // SETITEMS
        const std::vector<Value*> items = pop_mark();
        set_items(top(), items);
        break;
      }
      case 'c': {  // GLOBAL
        const std::string module = line();
        const std::string name = line();
        push(global(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        Value* name = pop();
        Value* module = pop();
        if (module->kind != Kind::kString || name->kind != Kind::kString) fail("STACK_GLOBAL expects two strs");
        push(global(module->text, name->text));
        break;
      }
      case 'R': {  // REDUCE
        Value* args = pop();
        Value* callable = pop();
        push(reduce(callable, args));
        break;
      }
      case 'b': {  // BUILD: sets an object's state; the only one expected is a state_dict's _metadata
        Value* state = pop();
        Value* target = top();
        if (target->kind != Kind::kDict && target->kind != Kind::kTensor)
          fail("BUILD on ", kind_name(target->kind), " is not supported");
        (void)state;
        break;
      }
      case 'Q': push(persistent_load(pop())); break;   // BINPERSID
      case 'q': memo_put(little_endian(1)); break;     // BINPUT
      case 'r': memo_put(little_endian(4)); break;     // LONG_BINPUT
      case 0x94: memo_put(memo_.size()); break;        // MEMOIZE
      case 'h': push(memo_get(little_endian(1))); break;  // BINGET
      case 'j': push(memo_get(little_endian(4))); break;  // LONG_BINGET
      default:
        fail("unsupported pickle opcode ", hex_byte(op),
             op >= 0x20 && op < 0x7f ? std::string(" '") + char(op) + "'" : std::string());
    }
  }
}

/// Appends pickle opcodes (protocol 2) to a byte string.
class PickleWriter {
 public:
  void op(char code) { out_.push_back(code); }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      out_.push_back(static_cast<char>(v));
    } else if (v >= 0 && v < 65536) {
      op('M');
      raw_le(static_cast<uint64_t>(v), 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      raw_le(static_cast<uint64_t>(static_cast<int32_t>(v)), 4);
    } else {  // LONG1: 8 bytes of two's complement, as Python reads any length
      op('\x8a');
      out_.push_back(8);
      raw_le(static_cast<uint64_t>(v), 8);
    }
  }
  void text(const std::string& s) {
    op('X');
    raw_le(s.size(), 4);
    out_ += s;
  }
  void global(const std::string& module, const std::string& name) {
    op('c');
    out_ += module + "\n" + name + "\n";
  }
  void int_tuple(c10::IntArrayRef values) {
    op('(');
    for (int64_t v : values) integer(v);
    op('t');
  }
  std::string take() { return std::move(out_); }

 private:
  void raw_le(uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  std::string out_;
};

/// element type -> torch.<Name>Storage (the inverse of storage_types()).
std::string storage_class_of(c10::ScalarType dtype) {
  for (const auto& [name, type] : storage_types())
    if (type == dtype && name != "torch.UntypedStorage") return name.substr(std::string("torch.").size());
  throw InputError(str_cat("save_tensors: PyTorch has no storage class for dtype ", dtype));
}

}  // namespace

std::string pickle_tensor_dict(const StateDict& tensors) {
  PickleWriter w;
  w.op('\x80');  // PROTO 2
  w.op('\x02');
  w.op('}');
  w.op('(');
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [key, t] = tensors[i];
    w.text(key);
    w.global("torch._utils", "_rebuild_tensor_v2");
    w.op('(');
    w.op('(');  // the persistent id of the storage
    w.text("storage");
    w.global("torch", storage_class_of(t.scalar_type()));
    w.text(std::to_string(i));
    w.text("cpu");
    w.integer(t.numel());
    w.op('t');
    w.op('Q');  // BINPERSID
    w.integer(0);  // storage offset
    w.int_tuple(t.sizes());
    std::vector<int64_t> strides(t.dim(), 1);  // row-major
    for (int64_t d = t.dim() - 2; d >= 0; --d) strides[d] = strides[d + 1] * std::max<int64_t>(t.size(d + 1), 1);
    w.int_tuple(strides);
    w.op('\x89');  // requires_grad = False
    w.global("collections", "OrderedDict");  // backward hooks: OrderedDict()
    w.op(')');
    w.op('R');
    w.op('t');
    w.op('R');  // _rebuild_tensor_v2(...)
  }
  w.op('u');  // SETITEMS
  w.op('.');
  return w.take();
}

StateDict unpickle_tensor_dict(std::string_view pickle, const StorageRecordReader& read_storage,
                               const std::string& origin) {
  Unpickler unpickler(pickle, read_storage, origin);
  const Value* root = unpickler.run();
  if (root->kind != Kind::kDict)
    throw CheckpointError(str_cat(origin, ": expected a dict of tensors, found ", kind_name(root->kind)));
  StateDict out;
  for (size_t i = 0; i < root->items.size(); i += 2) {
    const Value* key = root->items[i];
    const Value* value = root->items[i + 1];
    if (key->kind != Kind::kString)
      throw CheckpointError(str_cat(origin, ": expected a dict of tensors, found a key that is ", kind_name(key->kind)));
    if (value->kind != Kind::kTensor) {
      const char* hint = value->kind == Kind::kDict
                             ? " (a checkpoint holding several dicts? save the model's state_dict on its own)"
                             : "";
      throw CheckpointError(str_cat(origin, ": expected a dict of tensors, key '", key->text, "' holds ",
                                    kind_name(value->kind), hint));
    }
    out.emplace_back(key->text, value->tensor);
  }
  return out;
}

}  // namespace recmod::io
