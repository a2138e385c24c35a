// A strict, allocation-light JSON reader over a byte buffer, for the COCO file reader
// (coco_json.cpp). It accepts what Python's json module accepts (RFC 8259 plus NaN, Infinity and
// -Infinity; a UTF-8 byte order mark is skipped) and rejects the rest with a ValueError that gives
// the byte offset. Numbers are read as Python reads them: an integer literal is exact (int64, or
// "big" past it), any other number is the correctly rounded double.
#pragma once

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

#include <c10/util/Exception.h>

namespace fastops::coco_eval::json {

// The kind of a JSON value, as the reader reports a field it was asked for.
enum Kind : uint8_t {
  kAbsent = 0,  // the key is not there
  kInt = 1,     // integer literal within int64 (Python int)
  kFloat = 2,   // any other number (Python float): fraction, exponent, NaN, Infinity
  kBool = 3,    // true / false (Python bool: an int subclass)
  kNull = 4,
  kString = 5,
  kArray = 6,
  kObject = 7,
  kBigInt = 8,  // integer literal outside int64 (the double holds its rounded value)
};

struct Number {
  double value = 0;
  int64_t integer = 0;  // exact for kInt and kBool
  Kind kind = kAbsent;
};

class Reader {
 public:
  Reader(const uint8_t* data, int64_t size) : p_(data), begin_(data), end_(data + size) {
    if (size >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF) p_ += 3;  // UTF-8 BOM
  }

  [[noreturn]] void fail(const char* what) const {
    TORCH_CHECK_VALUE(false, "invalid JSON at byte ", p_ - begin_, ": ", what);
    __builtin_unreachable();
  }

  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  // The next non-space byte (0 at the end), not consumed.
  char peek() {
    ws();
    return p_ < end_ ? static_cast<char>(*p_) : '\0';
  }
  bool consume(char c) {
    if (peek() != c) return false;
    ++p_;
    return true;
  }
  void expect(char c, const char* what) {
    if (!consume(c)) fail(what);
  }
  bool at_end() {
    ws();
    return p_ == end_;
  }

  // Iterates the members of an object whose '{' is next: f(key) reads the value. Keys are given
  // decoded (escapes resolved) when they contain escapes.
  template <typename F>
  void object(F&& f) {
    expect('{', "expected an object");
    if (consume('}')) return;
    std::string scratch;
    do {
      if (peek() != '"') fail("expected a string key");
      const std::string_view key = string(scratch);
      expect(':', "expected ':' after an object key");
      f(key);
    } while (consume(','));
    expect('}', "expected ',' or '}' in an object");
  }

  // Iterates the elements of an array whose '[' is next: f() reads one element.
  template <typename F>
  void array(F&& f) {
    expect('[', "expected an array");
    if (consume(']')) return;
    do {
      f();
    } while (consume(','));
    expect(']', "expected ',' or ']' in an array");
  }

  // The kind of the next value, not consumed.
  Kind next_kind() {
    switch (peek()) {
      case '{': return kObject;
      case '[': return kArray;
      case '"': return kString;
      case 't':
      case 'f': return kBool;
      case 'n': return kNull;
      default: return kFloat;  // a number, or invalid (reported when read)
    }
  }

  // Reads a number, bool or null into n (null: kind kNull); any other value is skipped and its
  // kind reported. Returns whether n holds a number or bool.
  bool scalar(Number& n) {
    const Kind k = next_kind();
    if (k == kFloat) {
      number(n);
      return true;
    }
    if (k == kBool) {
      const bool v = literal("true") ? true : (literal("false") ? false : (fail("invalid literal"), false));
      n = {v ? 1.0 : 0.0, v ? 1 : 0, kBool};
      return true;
    }
    skip();
    n = {0, 0, k};
    return false;
  }

  // Reads a number (or NaN / Infinity / -Infinity).
  void number(Number& n) {
    ws();
    const uint8_t* s = p_;
    if (p_ < end_ && (*p_ == 'N' || *p_ == 'I' || (*p_ == '-' && end_ - p_ > 1 && p_[1] == 'I'))) {
      constexpr double inf = std::numeric_limits<double>::infinity();
      if (literal("NaN")) {
        n = {std::numeric_limits<double>::quiet_NaN(), 0, kFloat};
      } else if (literal("Infinity")) {
        n = {inf, 0, kFloat};
      } else if (literal("-Infinity")) {
        n = {-inf, 0, kFloat};
      } else {
        fail("expected a value");
      }
      return;
    }
    const bool neg = p_ < end_ && *p_ == '-';
    if (neg) ++p_;
    if (p_ == end_ || !is_digit(*p_)) fail("expected a value");
    // integer part: 0 or [1-9][0-9]*, accumulated exactly while it fits
    uint64_t mag = 0;
    bool big = false;
    if (*p_ == '0') {
      ++p_;
    } else {
      while (p_ < end_ && is_digit(*p_)) {
        const uint64_t d = *p_ - '0';
        if (mag > (UINT64_MAX - d) / 10) big = true;
        if (!big) mag = mag * 10 + d;
        ++p_;
      }
    }
    bool integral = true;
    // the decimal digits as an integer mantissa and a power of ten, while they fit (fast path)
    uint64_t mantissa = mag;
    int64_t exp10 = 0;
    bool exact = !big;
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      if (p_ == end_ || !is_digit(*p_)) fail("expected digits after '.'");
      while (p_ < end_ && is_digit(*p_)) {
        if (mantissa < kMantissaLimit) {
          mantissa = mantissa * 10 + (*p_ - '0');
          --exp10;
        } else {
          exact = false;
        }
        ++p_;
      }
      integral = false;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      const bool eneg = p_ < end_ && *p_ == '-';
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ == end_ || !is_digit(*p_)) fail("expected digits in an exponent");
      int64_t e = 0;
      while (p_ < end_ && is_digit(*p_)) {
        if (e < 100000) e = e * 10 + (*p_ - '0');
        ++p_;
      }
      exp10 += eneg ? -e : e;
      integral = false;
    }
    const uint64_t limit = neg ? uint64_t(1) << 63 : (uint64_t(1) << 63) - 1;
    if (integral && !big && mag <= limit) {
      n.integer = neg ? static_cast<int64_t>(0 - mag) : static_cast<int64_t>(mag);
      n.value = static_cast<double>(n.integer);
      n.kind = kInt;
      return;
    }
    n.kind = integral ? kBigInt : kFloat;
    n.integer = 0;
    // Clinger's fast path: a mantissa below 2^53 and a power of ten up to 22 are both exact doubles,
    // so one multiplication or division rounds correctly, as Python's float() does.
    if (exact && !integral && mantissa <= (uint64_t(1) << 53) && exp10 >= -22 && exp10 <= 22) {
      const double m = static_cast<double>(mantissa);
      const double v = exp10 < 0 ? m / kPow10[-exp10] : m * kPow10[exp10];
      n.value = neg ? -v : v;
      return;
    }
    n.value = to_double(s, p_);
  }

  // Reads a string whose '"' is next; returns its content, decoded into `scratch` when it has
  // escapes (\uXXXX as UTF-8), else a view into the buffer.
  std::string_view string(std::string& scratch) {
    ws();
    if (p_ == end_ || *p_ != '"') fail("expected a string");
    const uint8_t* s = ++p_;
    while (p_ < end_ && *p_ != '"' && *p_ != '\\') {
      if (*p_ < 0x20) fail("control character in a string");
      ++p_;
    }
    if (p_ == end_) fail("unterminated string");
    if (*p_ == '"') return {reinterpret_cast<const char*>(s), static_cast<size_t>(p_++ - s)};
    scratch.assign(reinterpret_cast<const char*>(s), p_ - s);
    while (true) {
      if (p_ == end_) fail("unterminated string");
      const uint8_t c = *p_++;
      if (c == '"') return scratch;
      if (c < 0x20) fail("control character in a string");
      if (c != '\\') {
        scratch.push_back(static_cast<char>(c));
        continue;
      }
      if (p_ == end_) fail("unterminated string");
      switch (*p_++) {
        case '"': scratch.push_back('"'); break;
        case '\\': scratch.push_back('\\'); break;
        case '/': scratch.push_back('/'); break;
        case 'b': scratch.push_back('\b'); break;
        case 'f': scratch.push_back('\f'); break;
        case 'n': scratch.push_back('\n'); break;
        case 'r': scratch.push_back('\r'); break;
        case 't': scratch.push_back('\t'); break;
        case 'u': append_utf8(scratch, code_point()); break;
        default: fail("invalid escape in a string");
      }
    }
  }

  // Skips one value of any kind (nesting limited, as Python's recursion is).
  void skip(int depth = 0) {
    if (depth > kMaxDepth) fail("nesting too deep");
    switch (peek()) {
      case '{': {
        object([&](std::string_view) { skip(depth + 1); });
        return;
      }
      case '[': {
        array([&] { skip(depth + 1); });
        return;
      }
      case '"': {
        ws();
        ++p_;
        while (p_ < end_ && *p_ != '"') {
          if (*p_ < 0x20) fail("control character in a string");
          if (*p_ == '\\') {
            ++p_;
            if (p_ == end_) break;
            if (*p_ == 'u') {
              ++p_;
              code_point();
              continue;
            }
            if (std::strchr("\"\\/bfnrt", *p_) == nullptr) fail("invalid escape in a string");
          }
          ++p_;
        }
        if (p_ == end_) fail("unterminated string");
        ++p_;
        return;
      }
      case 't':
        if (!literal("true")) fail("invalid literal");
        return;
      case 'f':
        if (!literal("false")) fail("invalid literal");
        return;
      case 'n':
        if (!literal("null")) fail("invalid literal");
        return;
      default: {
        Number n;
        number(n);
      }
    }
  }

  int64_t offset() const { return p_ - begin_; }

 private:
  static constexpr int kMaxDepth = 900;
  static constexpr uint64_t kMantissaLimit = 1000000000000000000ull;  // 10^18: room for one more digit
  static constexpr double kPow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

  bool literal(const char* word) {
    const size_t n = std::strlen(word);
    if (static_cast<size_t>(end_ - p_) >= n && std::memcmp(p_, word, n) == 0) {
      p_ += n;
      return true;
    }
    return false;
  }

  // Python's float() of the literal [s, e): correctly rounded; inf / 0 past the double range.
  double to_double(const uint8_t* s, const uint8_t* e) const {
    double v = 0;
    const char* first = reinterpret_cast<const char*>(s);
    const char* last = reinterpret_cast<const char*>(e);
    const auto r = std::from_chars(first, last, v);
    if (r.ec == std::errc() && r.ptr == last) return v;
    const std::string copy(first, last);  // out of range: strtod gives inf or 0 as Python does
    return std::strtod(copy.c_str(), nullptr);
  }

  uint32_t hex4() {
    if (end_ - p_ < 4) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const uint8_t c = *p_++;
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= c - '0';
      } else if (c >= 'a' && c <= 'f') {
        v |= c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        v |= c - 'A' + 10;
      } else {
        fail("invalid \\u escape");
      }
    }
    return v;
  }

  // The code point of a \u escape whose 'u' was consumed (a surrogate pair counts as one); a lone
  // surrogate is kept as its own value, as Python does.
  uint32_t code_point() {
    const uint32_t hi = hex4();
    if (hi >= 0xD800 && hi < 0xDC00 && end_ - p_ >= 6 && p_[0] == '\\' && p_[1] == 'u') {
      const uint8_t* save = p_;
      p_ += 2;
      const uint32_t lo = hex4();
      if (lo >= 0xDC00 && lo < 0xE000) return 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
      p_ = save;
    }
    return hi;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  const uint8_t* p_;
  const uint8_t* begin_;
  const uint8_t* end_;
};

}  // namespace fastops::coco_eval::json
