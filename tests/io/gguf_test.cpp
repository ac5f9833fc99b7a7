// GGUF: the llama.cpp-written fixtures read as llama.cpp wrote them, write()
// reproduces them byte for byte, every value type round-trips, and deliberately
// corrupted files are refused with an InputError naming the file and the thing.
// (CI reruns the *Corrupt* and *Hostile* suites under AddressSanitizer.)
#include "io/gguf.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <random>

#include "io/safetensors.hpp"
#include "io_test_util.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

namespace fs = std::filesystem;
using gguf::Value;
using gguf::ValueType;

constexpr std::uint32_t kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_K = 12, kIQ4_XS = 23, kBF16 = 30;

fs::path gguf_fixture(const std::string& name) { return test::fixture("gguf/" + name); }

std::vector<fs::path> all_gguf_fixtures() {
  std::vector<fs::path> paths;
  for (const auto& entry : fs::directory_iterator(test::fixture("gguf"))) {
    if (entry.path().extension() == ".gguf") paths.push_back(entry.path());
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

// Writes `file`'s metadata and tensors back through gguf::write.
void rewrite(const gguf::File& file, const fs::path& out) {
  std::vector<gguf::TensorToWrite> tensors;
  for (const auto& t : file.tensors()) tensors.push_back({t.name, t.ne, t.type, t.data});
  gguf::write(out, file.metadata(), tensors);
}

void expect_same_value(const Value& a, const Value& b, const std::string& key) {
  ASSERT_EQ(a.type, b.type) << key;
  ASSERT_EQ(a.data.index(), b.data.index()) << key;
  if (a.type == ValueType::array) {
    const auto& x = std::get<gguf::Array>(a.data);
    const auto& y = std::get<gguf::Array>(b.data);
    EXPECT_EQ(x.element_type, y.element_type) << key;
    ASSERT_EQ(x.items.size(), y.items.size()) << key;
    for (std::size_t i = 0; i < x.items.size(); ++i) {
      expect_same_value(x.items[i], y.items[i], key + "[" + std::to_string(i) + "]");
    }
    return;
  }
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (!std::is_same_v<T, gguf::Array>) {
          EXPECT_EQ(x, std::get<T>(b.data)) << key;
        }
      },
      a.data);
}

// ---------------------------------------------------------------- fixtures

TEST(GgufRead, TinyF16MetadataAndTensors) {
  const auto file = gguf::File::open(gguf_fixture("tiny-f16.gguf"));
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->alignment(), 32u);
  EXPECT_EQ(file->require("general.architecture").as_string("arch"), "llama");
  EXPECT_EQ(file->require("llama.block_count").as_int("blocks"), 4);
  EXPECT_EQ(file->require("llama.embedding_length").as_int("n_embd"), 256);
  EXPECT_EQ(file->require("llama.rope.freq_base").as_float("rope"), 10000.0);
  EXPECT_EQ(file->metadata().front().first, "general.architecture");  // file order kept
  const auto& tokens = file->require("tokenizer.ggml.tokens").as_array("tokens");
  EXPECT_EQ(tokens.element_type, ValueType::string);
  ASSERT_EQ(tokens.items.size(), 2048u);
  EXPECT_EQ(tokens.items[0].as_string("token 0"), "<|endoftext|>");
  const auto& types = file->require("tokenizer.ggml.token_type").as_array("types");
  EXPECT_EQ(types.element_type, ValueType::i32);
  EXPECT_EQ(types.items[0].as_int("type 0"), 3);
  EXPECT_EQ(file->find("general.alignment"), nullptr);

  ASSERT_EQ(file->tensors().size(), 39u);  // 4 blocks x 9 + embeddings, output, output norm
  const auto& q = file->require_tensor("blk.0.attn_q.weight");
  EXPECT_EQ(q.ne, (std::vector<std::int64_t>{256, 256}));
  EXPECT_EQ(q.type, kF16);
  EXPECT_EQ(q.data.size(), 256u * 256 * 2);
  const auto& k = file->require_tensor("blk.3.attn_k.weight");
  EXPECT_EQ(k.ne, (std::vector<std::int64_t>{256, 128}));  // 2 kv heads x 64
  EXPECT_EQ(k.rows(), 128);
  const auto& norm = file->require_tensor("blk.0.attn_norm.weight");
  EXPECT_EQ(norm.ne, (std::vector<std::int64_t>{256}));
  EXPECT_EQ(norm.type, kF32);
  EXPECT_EQ(file->find_tensor("model.norm.weight"), nullptr);
}

TEST(GgufRead, TinyF16EmbeddingIsTheSafetensorsBytes) {
  const auto file = gguf::File::open(gguf_fixture("tiny-f16.gguf"));
  const auto st = SafetensorsFile::open(test::fixture("models/tiny/model.safetensors"));
  const TensorView* hf = st->find("model.embed_tokens.weight");
  ASSERT_NE(hf, nullptr);
  const auto& embd = file->require_tensor("token_embd.weight");
  // Hugging Face [vocab, hidden] row-major is ggml's ne = {hidden, vocab}.
  EXPECT_EQ(embd.ne, (std::vector<std::int64_t>{hf->shape[1], hf->shape[0]}));
  ASSERT_EQ(embd.data.size(), hf->bytes.size());
  EXPECT_EQ(std::memcmp(embd.data.data(), hf->bytes.data(), embd.data.size()), 0);
}

TEST(GgufRead, QuantizedFixturesHoldTheirTypes) {
  const std::pair<const char*, const char*> cases[] = {
      {"tiny-Q4_0.gguf", "Q4_0"}, {"tiny-Q4_K.gguf", "Q4_K"}, {"tiny-Q4_K-imatrix.gguf", "Q4_K"},
      {"tiny-Q5_K.gguf", "Q5_K"}, {"tiny-Q6_K.gguf", "Q6_K"}, {"tiny-Q8_0.gguf", "Q8_0"}};
  const auto f16 = gguf::File::open(gguf_fixture("tiny-f16.gguf"));
  for (const auto& [name, type_name] : cases) {
    SCOPED_TRACE(name);
    const auto file = gguf::File::open(gguf_fixture(name));
    const gguf::TensorTypeInfo* type = gguf::find_tensor_type(type_name);
    ASSERT_NE(type, nullptr);
    for (const auto& t : file->tensors()) {
      // --pure: every 2-D tensor in the one type, norms stay F32.
      EXPECT_EQ(t.type, t.ne.size() == 2 ? type->id : kF32) << t.name;
      const auto rows = static_cast<std::uint64_t>(t.rows());
      const auto* tt = gguf::find_tensor_type(t.type);
      EXPECT_EQ(t.data.size(), rows * static_cast<std::uint64_t>(t.ne[0] / tt->block_size) *
                                   static_cast<std::uint64_t>(tt->type_size))
          << t.name;
    }
    EXPECT_EQ(file->require_tensor("blk.1.ffn_down.weight").ne,
              f16->require_tensor("blk.1.ffn_down.weight").ne);
  }
}

TEST(GgufRead, EveryFixtureOpens) {
  const auto paths = all_gguf_fixtures();
  EXPECT_EQ(paths.size(), 8u);
  for (const auto& path : paths) {
    SCOPED_TRACE(path.string());
    const auto file = gguf::File::open(path);
    EXPECT_EQ(file->version(), 3u);
    EXPECT_FALSE(file->tensors().empty());
    EXPECT_EQ(file->require("general.type").as_string("type"),
              path.filename() == "tiny-imatrix.gguf" ? "imatrix" : "model");
  }
}

TEST(GgufRead, TypedAccessorsNameTheKeyOnMismatch) {
  const auto file = gguf::File::open(gguf_fixture("tiny-f16.gguf"));
  const Value& blocks = file->require("llama.block_count");
  EXPECT_EQ(blocks.as_float("blocks"), 4.0);  // integers read as numbers too
  test::expect_input_error([&] { blocks.as_string("llama.block_count"); },
                           {"llama.block_count", "expected a string", "found u32 4"});
  test::expect_input_error([&] { file->require("general.name").as_int("general.name"); },
                           {"general.name", "an integer", "string \"Tiny\""});
  test::expect_input_error([&] { file->require("tokenizer.ggml.merges").as_bool("merges"); },
                           {"merges", "a bool", "array of 1791 string"});
  test::expect_input_error([&] { file->require("no.such.key"); },
                           {"tiny-f16.gguf", "metadata key \"no.such.key\"", "found none"});
  test::expect_input_error([&] { file->require_tensor("lm_head.weight"); },
                           {"tiny-f16.gguf", "tensor \"lm_head.weight\"", "found none"});
  EXPECT_EQ(gguf::make_u64(std::numeric_limits<std::uint64_t>::max()).as_float("big"), 0x1p64);
  test::expect_input_error(
      [&] { gguf::make_u64(std::numeric_limits<std::uint64_t>::max()).as_int("big"); },
      {"big", "below 2^63"});
}

// ---------------------------------------------------------------- writing

TEST(GgufWrite, RewritesTinyF16ByteForByte) {
  const auto path = gguf_fixture("tiny-f16.gguf");
  const auto out = test::temp_dir("gguf") / "rewritten.gguf";
  rewrite(*gguf::File::open(path), out);
  EXPECT_TRUE(test::read_bytes(out) == test::read_bytes(path));
}

TEST(GgufWrite, RewritesEveryLlamaCppFixtureByteForByte) {
  const auto dir = test::temp_dir("gguf");
  for (const auto& path : all_gguf_fixtures()) {
    SCOPED_TRACE(path.string());
    rewrite(*gguf::File::open(path), dir / path.filename());
    EXPECT_TRUE(test::read_bytes(dir / path.filename()) == test::read_bytes(path));
  }
}

struct OwnedTensor {
  std::string name;
  std::vector<std::int64_t> ne;
  std::uint32_t type;
  std::vector<std::byte> data;
};

OwnedTensor random_tensor(std::string name, std::vector<std::int64_t> ne, std::uint32_t type,
                          std::mt19937& rng) {
  std::vector<std::byte> data(gguf::tensor_bytes(*gguf::find_tensor_type(type), ne));
  for (auto& b : data) b = static_cast<std::byte>(rng() & 0xff);
  return {std::move(name), std::move(ne), type, std::move(data)};
}

Value array_of(ValueType element_type, std::vector<Value> items) {
  return {ValueType::array, gguf::Array{element_type, std::move(items)}};
}

std::vector<std::pair<std::string, Value>> every_value_type() {
  const std::int32_t ints[] = {-1, 0, 7};
  const float floats[] = {1.5f, -0.0f};
  return {
      {"general.alignment", gguf::make_u32(64)},
      {"t.u8", {ValueType::u8, std::uint8_t{200}}},
      {"t.i8", {ValueType::i8, std::int8_t{-100}}},
      {"t.u16", {ValueType::u16, std::uint16_t{65000}}},
      {"t.i16", {ValueType::i16, std::int16_t{-32000}}},
      {"t.u32", gguf::make_u32(4000000000u)},
      {"t.i32", gguf::make_i32(-2000000000)},
      {"t.f32", gguf::make_f32(3.25f)},
      {"t.bool", gguf::make_bool(true)},
      {"t.string", gguf::make_string("héllo\n")},
      {"t.empty_string", gguf::make_string("")},
      {"t.u64", gguf::make_u64(std::numeric_limits<std::uint64_t>::max())},
      {"t.i64", {ValueType::i64, std::numeric_limits<std::int64_t>::min()}},
      {"t.f64", {ValueType::f64, 0.1}},
      {"t.strings", gguf::make_string_array({"a", "", "ccc"})},
      {"t.i32s", gguf::make_i32_array(ints)},
      {"t.f32s", gguf::make_f32_array(floats)},
      {"t.bools", array_of(ValueType::boolean, {gguf::make_bool(false), gguf::make_bool(true)})},
      {"t.empty_array", array_of(ValueType::u64, {})},
      {"t.nested",
       array_of(ValueType::array, {gguf::make_i32_array(ints), array_of(ValueType::i32, {})})},
  };
}

// The size llama.cpp's writer gave each fixture is what file_layout predicts
// from the metadata and the tensor infos alone (no tensor data given).
TEST(GgufWrite, LayoutPredictsEveryLlamaCppFixturesSize) {
  for (const auto& path : all_gguf_fixtures()) {
    const auto file = gguf::File::open(path);
    std::vector<gguf::TensorToWrite> infos;
    for (const auto& t : file->tensors()) infos.push_back({t.name, t.ne, t.type, {}});
    const gguf::FileLayout layout = gguf::file_layout(file->metadata(), infos);
    EXPECT_EQ(layout.alignment, file->alignment()) << path;
    std::uint64_t size = layout.data_offset;
    for (const auto& t : file->tensors())
      size += (t.data.size() + layout.alignment - 1) / layout.alignment * layout.alignment;
    EXPECT_EQ(size, fs::file_size(path)) << path;
  }
}

TEST(GgufWrite, RoundTripsEveryValueTypeAndTensorType) {
  std::mt19937 rng(11);
  const std::vector<OwnedTensor> owned = {
      random_tensor("f32", {3, 2}, kF32, rng),
      random_tensor("f16", {5}, kF16, rng),
      random_tensor("bf16", {7, 1, 3}, kBF16, rng),
      random_tensor("q4_0", {64, 2}, kQ4_0, rng),
      random_tensor("q4_k", {256, 1, 1, 2}, kQ4_K, rng),
      random_tensor("iq4_xs", {512, 3}, kIQ4_XS, rng),
  };
  std::vector<gguf::TensorToWrite> tensors;
  for (const auto& t : owned) tensors.push_back({t.name, t.ne, t.type, t.data});
  const auto metadata = every_value_type();
  const auto path = test::temp_dir("gguf") / "all.gguf";
  gguf::write(path, metadata, tensors);

  const auto file = gguf::File::open(path);
  EXPECT_EQ(file->alignment(), 64u);
  ASSERT_EQ(file->metadata().size(), metadata.size());
  for (std::size_t i = 0; i < metadata.size(); ++i) {
    EXPECT_EQ(file->metadata()[i].first, metadata[i].first);
    expect_same_value(file->metadata()[i].second, metadata[i].second, metadata[i].first);
  }
  ASSERT_EQ(file->tensors().size(), owned.size());
  for (std::size_t i = 0; i < owned.size(); ++i) {
    const auto& t = file->tensors()[i];
    EXPECT_EQ(t.name, owned[i].name);
    EXPECT_EQ(t.ne, owned[i].ne);
    EXPECT_EQ(t.type, owned[i].type);
    EXPECT_EQ(t.offset % 64, 0u);
    ASSERT_EQ(t.data.size(), owned[i].data.size());
    EXPECT_EQ(std::memcmp(t.data.data(), owned[i].data.data(), t.data.size()), 0);
  }
  EXPECT_EQ(fs::file_size(path) % 64, 0u);  // the last tensor is padded too, as llama.cpp does
}

TEST(GgufWrite, MetadataOnlyFileIsPaddedAndReadable) {
  const auto path = test::temp_dir("gguf") / "meta.gguf";
  const std::vector<std::pair<std::string, Value>> metadata = {
      {"general.type", gguf::make_string("x")}};
  gguf::write(path, metadata, {});
  EXPECT_EQ(fs::file_size(path), 64u);  // 24 header + 8 + 12 key + 4 type + 8 + 1 = 57, padded
  EXPECT_EQ(gguf::File::open(path)->require("general.type").as_string("type"), "x");
}

TEST(GgufWrite, RefusesWhatLlamaCppCannotLoad) {
  const auto dir = test::temp_dir("gguf");
  const auto path = dir / "out.gguf";
  const float x[32] = {};
  const auto bytes = std::as_bytes(std::span(x));
  using Meta = std::vector<std::pair<std::string, Value>>;
  const auto refused = [&](const Meta& metadata, std::vector<gguf::TensorToWrite> tensors,
                           std::initializer_list<std::string> needles) {
    test::expect_input_error([&] { gguf::write(path, metadata, tensors); }, needles);
    EXPECT_FALSE(fs::exists(path));
  };
  refused({{"a", gguf::make_u32(1)}, {"a", gguf::make_u32(2)}}, {},
          {"out.gguf: key \"a\"", "each key once", "a duplicate"});
  refused({{"", gguf::make_u32(1)}}, {}, {"out.gguf: metadata", "non-empty keys"});
  refused({}, {{"w", {32}, kF32, bytes.first(128)}, {"w", {32}, kF32, bytes.first(128)}},
          {"out.gguf: tensor \"w\"", "each name once"});
  refused({}, {{std::string(64, 'n'), {32}, kF32, bytes.first(128)}},
          {"out.gguf: tensor", "1 to 63 bytes", "found 64 bytes"});
  refused({{"general.alignment", gguf::make_u32(48)}}, {},
          {"out.gguf: key \"general.alignment\"", "a power of two", "found 48"});
  refused({{"general.alignment", gguf::make_u64(64)}}, {},
          {"general.alignment", "a u32", "found u64 64"});
  EXPECT_TRUE(fs::is_empty(dir));  // no temporary file left behind
}

// ---------------------------------------------------------------- corrupted files

// Raw GGUF bytes, field by field, so tests can write what no writer would.
struct Raw {
  std::string bytes;

  template <typename T>
  Raw& put(T value) {
    bytes.append(reinterpret_cast<const char*>(&value), sizeof value);
    return *this;
  }
  Raw& u32(std::uint32_t v) { return put(v); }
  Raw& u64(std::uint64_t v) { return put(v); }
  Raw& str(std::string_view s) {
    u64(s.size());
    bytes.append(s);
    return *this;
  }
};

std::string kv_raw(std::string_view key, ValueType type, const std::string& payload) {
  Raw raw;
  raw.str(key).u32(static_cast<std::uint32_t>(type));
  return raw.bytes + payload;
}
std::string kv_u32(std::string_view key, std::uint32_t v) {
  return kv_raw(key, ValueType::u32, Raw{}.u32(v).bytes);
}
std::string kv_string(std::string_view key, std::string_view v) {
  return kv_raw(key, ValueType::string, Raw{}.str(v).bytes);
}

struct RawTensor {
  std::string name;
  std::vector<std::uint64_t> ne;
  std::uint32_t type = kF32;
  std::uint64_t offset = 0;
};

// A well-formed file unless a field says otherwise: tensors "a" (F32 [8]) and
// "b" (F32 [4, 2]) 32 bytes apart, one key, 64 bytes of data.
struct Spec {
  std::uint32_t version = 3;
  std::vector<std::string> kvs = {kv_string("general.architecture", "llama")};
  std::vector<RawTensor> tensors = {{"a", {8}}, {"b", {4, 2}, kF32, 32}};
  std::uint64_t alignment = 32;
  std::uint64_t data_bytes = 64;
  std::optional<std::uint64_t> n_kv = std::nullopt;  // override the true counts
  std::optional<std::uint64_t> n_tensors = std::nullopt;

  std::string build() const {
    Raw raw;
    raw.bytes = "GGUF";
    raw.u32(version).u64(n_tensors.value_or(tensors.size())).u64(n_kv.value_or(kvs.size()));
    for (const auto& kv : kvs) raw.bytes += kv;
    for (const auto& t : tensors) {
      raw.str(t.name).u32(static_cast<std::uint32_t>(t.ne.size()));
      for (const auto d : t.ne) raw.u64(d);
      raw.u32(t.type).u64(t.offset);
    }
    raw.bytes.resize((raw.bytes.size() + alignment - 1) / alignment * alignment, '\0');
    return raw.bytes + std::string(data_bytes, '\0');
  }
};

fs::path write_bad(const std::string& bytes) {
  const auto path = test::temp_dir("gguf") / "bad.gguf";
  test::write_text(path, bytes);
  return path;
}

void expect_refused(const Spec& spec, std::initializer_list<std::string> needles) {
  const auto path = write_bad(spec.build());
  test::expect_input_error([&] { gguf::File::open(path); }, needles);
}

TEST(GgufCorrupt, TheBaseSpecIsValid) {
  const auto file = gguf::File::open(write_bad(Spec{}.build()));
  EXPECT_EQ(file->tensors().size(), 2u);
  EXPECT_EQ(file->require_tensor("b").data.size(), 32u);
}

TEST(GgufCorrupt, BadMagic) {
  std::string bytes = Spec{}.build();
  bytes[3] = 'X';
  const auto path = write_bad(bytes);
  test::expect_input_error([&] { gguf::File::open(path); },
                           {"bad.gguf: header", "the GGUF magic \"GGUF\"", "found \"GGUX\""});
}

TEST(GgufCorrupt, UnsupportedVersion) {
  expect_refused(Spec{.version = 1}, {"bad.gguf: header", "GGUF version 2 or 3", "version 1"});
  expect_refused(Spec{.version = 4}, {"bad.gguf: header", "version 4"});
  EXPECT_EQ(gguf::File::open(write_bad(Spec{.version = 2}.build()))->version(), 2u);
}

TEST(GgufCorrupt, EmptyFileAndNotAFile) {
  test::expect_input_error([&] { gguf::File::open(write_bad("")); },
                           {"bad.gguf: header magic", "4 bytes at offset 0", "truncated"});
  const auto dir = test::temp_dir("gguf");
  test::expect_input_error([&] { gguf::File::open(dir); }, {dir.string(), "a regular file"});
  test::expect_input_error([&] { gguf::File::open(dir / "absent.gguf"); },
                           {"absent.gguf", "a readable file"});
}

// A cut file fails where it is cut: in the header (truncated, or a count or length
// that no longer fits in what is left) or in the data section.
TEST(GgufCorrupt, TruncatedAtEveryByte) {
  Spec spec;
  spec.kvs.push_back(
      kv_raw("t.strings", ValueType::array, Raw{}.u32(8).u64(2).str("x").str("yz").bytes));
  const std::string whole = spec.build();
  Spec unpadded = spec;
  unpadded.alignment = 1;
  unpadded.data_bytes = 0;
  const std::size_t header_end = unpadded.build().size();
  for (std::size_t cut = 0; cut < whole.size(); ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    const auto path = write_bad(whole.substr(0, cut));
    try {
      gguf::File::open(path);
      ADD_FAILURE() << "expected InputError";
    } catch (const InputError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path.string() + ": "), std::string::npos) << message;
      const bool in_header = message.find("truncated") != std::string::npos ||
                             message.find("counts that fit") != std::string::npos ||
                             message.find("bytes left in the file") != std::string::npos;
      const bool in_data = message.find("data inside the data section") != std::string::npos;
      EXPECT_TRUE(cut < header_end ? in_header : in_data) << message;
    }
  }
}

TEST(GgufCorrupt, TruncatedFixtureAtManyPoints) {
  const std::string whole = test::read_bytes(gguf_fixture("tiny-imatrix.gguf"));
  // llama.cpp pads after the last tensor too; only a cut before that padding loses data.
  const std::size_t last_bytes =
      gguf::File::open(gguf_fixture("tiny-imatrix.gguf"))->tensors().back().data.size();
  const std::size_t data_end = whole.size() - (32 - last_bytes % 32) % 32;
  for (std::size_t cut = 0; cut < data_end; cut += 97) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    const auto path = write_bad(whole.substr(0, cut));
    test::expect_input_error([&] { gguf::File::open(path); }, {"bad.gguf: "});
  }
  const auto path = write_bad(whole.substr(0, data_end - 1));
  test::expect_input_error([&] { gguf::File::open(path); },
                           {"tensor \"blk.3.ffn_up.weight.counts\"", "data inside"});
  EXPECT_EQ(gguf::File::open(write_bad(whole.substr(0, data_end)))->tensors().size(), 56u);
}

TEST(GgufHostile, AbsurdCountsAreRefusedBeforeAllocating) {
  expect_refused(Spec{.n_tensors = std::numeric_limits<std::uint64_t>::max()},
                 {"bad.gguf: header", "counts that fit in the", "18446744073709551615 tensors"});
  expect_refused(Spec{.n_kv = std::uint64_t{1} << 62},
                 {"bad.gguf: header", "4611686018427387904 metadata entries"});
}

TEST(GgufHostile, StringLengthsPastTheEnd) {
  expect_refused(Spec{.kvs = {Raw{}.u64(std::uint64_t{1} << 60).bytes}},
                 {"bad.gguf: metadata entry 0 key length", "at most", "1152921504606846976"});
  expect_refused(Spec{.kvs = {kv_raw("general.name", ValueType::string, Raw{}.u64(5000).bytes)}},
                 {"key \"general.name\" string length", "(the bytes left in the file)", "5000"});
  Raw raw;  // one tensor whose info is a name length far past the end
  raw.bytes = "GGUF";
  raw.u32(3).u64(1).u64(0).u64(~std::uint64_t{0});
  const auto path = write_bad(raw.bytes + std::string(40, '\0'));
  test::expect_input_error([&] { gguf::File::open(path); },
                           {"bad.gguf: tensor info 0 name length", "at most"});
}

TEST(GgufHostile, ArrayLengthPastTheEnd) {
  const std::string huge_strings = Raw{}.u32(8).u64(std::uint64_t{1} << 40).bytes;
  expect_refused(
      Spec{.kvs = {kv_raw("tokenizer.ggml.tokens", ValueType::array, huge_strings)}},
      {"key \"tokenizer.ggml.tokens\" array length", "string elements", "1099511627776"});
  const std::string many_floats = Raw{}.u32(6).u64(100).bytes;  // 400 bytes, far fewer left
  expect_refused(Spec{.kvs = {kv_raw("t.f", ValueType::array, many_floats)}},
                 {"key \"t.f\" array length", "f32 elements", "found 100"});
}

TEST(GgufCorrupt, UnknownValueTypes) {
  expect_refused(Spec{.kvs = {kv_raw("t.x", static_cast<ValueType>(13), Raw{}.u32(0).bytes)}},
                 {"bad.gguf: key \"t.x\" value type", "a GGUF value type id 0-12", "found 13"});
  expect_refused(Spec{.kvs = {kv_raw("t.a", ValueType::array, Raw{}.u32(77).u64(1).bytes)}},
                 {"key \"t.a\" array element type", "found 77"});
}

TEST(GgufHostile, DeeplyNestedArraysStop) {
  Raw nested;
  for (int i = 0; i < 100000; ++i) nested.u32(9).u64(1);
  expect_refused(Spec{.kvs = {kv_raw("t.deep", ValueType::array, nested.bytes)}},
                 {"key \"t.deep\" array", "nested at most 16 deep"});
}

TEST(GgufCorrupt, BoolOtherThanZeroOrOne) {
  expect_refused(Spec{.kvs = {kv_raw("t.b", ValueType::boolean, "\x02")}},
                 {"key \"t.b\" bool", "0 or 1", "found 2"});
}

TEST(GgufCorrupt, EmptyAndDuplicateKeys) {
  expect_refused(Spec{.kvs = {kv_u32("", 1)}},
                 {"bad.gguf: metadata entry 0 key", "a non-empty key"});
  expect_refused(Spec{.kvs = {kv_u32("llama.block_count", 1), kv_u32("llama.block_count", 2)}},
                 {"bad.gguf: key \"llama.block_count\"", "each key once", "a duplicate"});
}

TEST(GgufCorrupt, BadAlignmentValues) {
  expect_refused(Spec{.kvs = {kv_u32("general.alignment", 48)}},
                 {"bad.gguf: key \"general.alignment\"", "a power of two", "found 48"});
  expect_refused(Spec{.kvs = {kv_u32("general.alignment", 0)}},
                 {"key \"general.alignment\"", "a power of two", "found 0"});
  expect_refused(Spec{.kvs = {kv_raw("general.alignment", ValueType::u64, Raw{}.u64(32).bytes)}},
                 {"key \"general.alignment\"", "a u32", "found u64 32"});
}

TEST(GgufCorrupt, UnknownTensorTypeIds) {
  expect_refused(Spec{.tensors = {{"a", {8}, 4}}},  // Q4_2, retired from ggml
                 {"bad.gguf: tensor \"a\" type", "a ggml type id", "found 4"});
  expect_refused(Spec{.tensors = {{"a", {8}, 0xffffffffu}}}, {"tensor \"a\" type", "4294967295"});
}

TEST(GgufCorrupt, DimensionCounts) {
  expect_refused(Spec{.tensors = {{"a", {}}}},
                 {"bad.gguf: tensor \"a\" n_dims", "1 to 4 dimensions", "found 0"});
  expect_refused(Spec{.tensors = {{"a", {1, 1, 1, 1, 8}}}}, {"tensor \"a\" n_dims", "found 5"});
}

TEST(GgufCorrupt, ZeroAndNegativeDimensions) {
  expect_refused(Spec{.tensors = {{"a", {8}}, {"b", {4, 0}, kF32, 32}}},
                 {"bad.gguf: tensor \"b\" dimension 1", "at least 1 element", "found 0"});
  expect_refused(Spec{.tensors = {{"a", {static_cast<std::uint64_t>(-2)}}}},
                 {"tensor \"a\" dimension 0", "found -2"});
}

TEST(GgufHostile, ShapeWhoseSizeOverflows) {
  // 2^32 x 2^32 x 4 bytes wraps a 64-bit byte count to 0.
  expect_refused(Spec{.tensors = {{"a", {std::uint64_t{1} << 32, std::uint64_t{1} << 32}}}},
                 {"bad.gguf: tensor \"a\" shape", "fits in 64 bits"});
  expect_refused(Spec{.tensors = {{"a", {std::uint64_t{1} << 61, 2}}}},  // 2^62 x 4 bytes
                 {"tensor \"a\" shape", "fits in 64 bits"});
}

TEST(GgufCorrupt, RowLengthNotAMultipleOfTheBlock) {
  expect_refused(
      Spec{.tensors = {{"q", {32, 2}, kQ4_K}}},
      {"bad.gguf: tensor \"q\" row length", "a multiple of Q4_K's block size 256", "found 32"});
}

TEST(GgufCorrupt, MisalignedOffset) {
  expect_refused(Spec{.tensors = {{"a", {8}}, {"b", {4, 2}, kF32, 36}}},
                 {"bad.gguf: tensor \"b\" offset", "a multiple of the alignment 32", "found 36"});
}

TEST(GgufCorrupt, DataPastTheEndOfTheFile) {
  expect_refused(Spec{.tensors = {{"a", {8}}, {"b", {4, 2}, kF32, 1024}}},
                 {"bad.gguf: tensor \"b\"", "data inside the data section's 64 bytes",
                  "offset 1024 + 32 bytes"});
  expect_refused(Spec{.tensors = {{"a", {8}}, {"b", {4, 4}, kF32, 32}}},
                 {"tensor \"b\"", "offset 32 + 64 bytes"});
}

TEST(GgufHostile, OffsetNearUint64MaxDoesNotWrap) {
  expect_refused(Spec{.tensors = {{"a", {8}}, {"b", {4, 2}, kF32, ~std::uint64_t{31}}}},
                 {"tensor \"b\"", "data inside the data section"});
}

TEST(GgufCorrupt, OverlappingTensors) {
  expect_refused(Spec{.tensors = {{"a", {16}}, {"b", {4, 2}, kF32, 32}}},
                 {"bad.gguf: tensor \"b\"", "data not overlapping other tensors",
                  "inside tensor \"a\" (offset 0, 64 bytes)"});
}

TEST(GgufCorrupt, DuplicateTensorNames) {
  expect_refused(Spec{.tensors = {{"a", {8}}, {"a", {4, 2}, kF32, 32}}},
                 {"bad.gguf: tensor \"a\"", "each name once", "a duplicate"});
}

}  // namespace
}  // namespace ptq
