#include "coordinator/api/http/openai_request.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace layerskip::coordinator::http {
namespace {

using json = nlohmann::ordered_json;

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// The field's value, or null when absent.
const json* Field(const json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

absl::StatusOr<int64_t> Integer(const json& v, const char* name, int64_t lo, int64_t hi) {
  int64_t x = 0;
  if (v.is_number_integer()) x = v.get<int64_t>();
  else if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() && std::abs(v.get<double>()) < 9e15)
    x = static_cast<int64_t>(v.get<double>());
  else return Invalid(name, "expected an integer");
  if (x < lo || x > hi) return Invalid(name, absl::StrCat("must be in [", lo, ", ", hi, "], got ", x));
  return x;
}

absl::StatusOr<double> Number(const json& v, const char* name) {
  if (!v.is_number()) return Invalid(name, "expected a number");
  return v.get<double>();
}

absl::StatusOr<bool> Bool(const json& v, const char* name) {
  if (!v.is_boolean()) return Invalid(name, "expected true or false");
  return v.get<bool>();
}

// Token ids from a JSON array of integers.
absl::Status Ids(const json& a, v1::GenerateRequest& q) {
  for (const json& id : a) {
    if (!id.is_number_integer()) return Invalid("prompt", "a token-id prompt must hold integers only");
    const int64_t v = id.get<int64_t>();
    if (v < 0 || v > std::numeric_limits<int32_t>::max()) return Invalid("prompt", absl::StrCat("token id ", v, " is out of range"));
    q.add_prompt_ids(static_cast<int32_t>(v));
  }
  return absl::OkStatus();
}

absl::Status Prompt(const json& p, v1::GenerateRequest& q) {
  if (p.is_string()) {
    q.set_prompt(p.get<std::string>());
    return absl::OkStatus();
  }
  if (!p.is_array() || p.empty()) return Invalid("prompt", "expected a string, a list of one string, or token ids");
  if (p[0].is_number_integer()) return Ids(p, q);
  if (p.size() != 1) return Invalid("prompt", "only one prompt per request is supported");
  if (p[0].is_string()) {
    q.set_prompt(p[0].get<std::string>());
    return absl::OkStatus();
  }
  if (p[0].is_array()) return Ids(p[0], q);
  return Invalid("prompt", "expected a string, a list of one string, or token ids");
}

// Chat messages with their content as a string (a list of text parts is joined; other parts refused).
absl::StatusOr<json> Messages(const json& m) {
  if (!m.is_array() || m.empty()) return Invalid("messages", "expected a non-empty list of messages");
  json out = json::array();
  for (size_t i = 0; i < m.size(); ++i) {
    const json& msg = m[i];
    const std::string where = absl::StrCat("messages[", i, "]");
    if (!msg.is_object()) return Invalid(where, "expected an object with role and content");
    auto role = msg.find("role");
    if (role == msg.end() || !role->is_string()) return Invalid(where, "role: expected a string");
    json copy = msg;
    auto content = msg.find("content");
    if (content == msg.end() || content->is_null()) {
      copy["content"] = "";
    } else if (content->is_array()) {
      std::string text;
      for (const json& part : *content) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
          return Invalid(where, "content: only text parts are supported");
        text += part["text"].get<std::string>();
      }
      copy["content"] = text;
    } else if (!content->is_string()) {
      return Invalid(where, "content: expected a string or a list of text parts");
    }
    out.push_back(std::move(copy));
  }
  return out;
}

// Refuses an OpenAI field this server does not implement unless it holds its default.
absl::Status Unsupported(const json& body, const char* name, const json& default_value) {
  const json* v = Field(body, name);
  if (!v || *v == default_value) return absl::OkStatus();
  return Invalid(name, "is not supported by this server");
}

}  // namespace

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(const std::string& text, bool chat) {
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return absl::InvalidArgumentError("body: not valid JSON");
  if (!body.is_object()) return absl::InvalidArgumentError("body: expected a JSON object");
  OpenAiRequest r;
  r.chat = chat;
  v1::GenerateRequest& q = r.generate;

  if (const json* m = Field(body, "model")) {
    if (!m->is_string()) return Invalid("model", "expected a string");
    r.model = m->get<std::string>();
  }
  if (chat) {
    const json* m = Field(body, "messages");
    if (!m) return Invalid("messages", "is required");
    auto messages = Messages(*m);
    if (!messages.ok()) return messages.status();
    r.messages = *std::move(messages);
    if (const json* v = Field(body, "add_generation_prompt")) {
      auto b = Bool(*v, "add_generation_prompt");
      if (!b.ok()) return b.status();
      r.add_generation_prompt = *b;
    }
  } else {
    const json* p = Field(body, "prompt");
    if (!p) return Invalid("prompt", "is required");
    if (absl::Status s = Prompt(*p, q); !s.ok()) return s;
  }

  const json* max_tokens = Field(body, chat && Field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens");
  if (max_tokens) {
    auto v = Integer(*max_tokens, chat && Field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens", 1, 1 << 30);
    if (!v.ok()) return v.status();
    q.set_max_tokens(static_cast<int32_t>(*v));
  }
  if (const json* v = Field(body, "temperature")) {
    auto t = Number(*v, "temperature");
    if (!t.ok()) return t.status();
    q.set_temperature(static_cast<float>(*t));
  }
  if (const json* v = Field(body, "top_p")) {
    auto t = Number(*v, "top_p");
    if (!t.ok()) return t.status();
    q.set_top_p(static_cast<float>(*t));
  }
  if (const json* v = Field(body, "top_k")) {
    auto k = Integer(*v, "top_k", -1, 1 << 30);  // vLLM spells "off" as -1
    if (!k.ok()) return k.status();
    q.set_top_k(static_cast<int32_t>(std::max<int64_t>(0, *k)));
  }
  if (const json* v = Field(body, "seed")) {
    auto s = Integer(*v, "seed", 0, std::numeric_limits<int64_t>::max());
    if (!s.ok()) return s.status();
    q.set_seed(static_cast<uint64_t>(*s));
  }
  if (const json* v = Field(body, "n")) {
    auto n = Integer(*v, "n", 1, 1 << 30);
    if (!n.ok()) return n.status();
    if (*n != 1) return Invalid("n", absl::StrCat("only n=1 is supported, got ", *n));
  }
  if (const json* v = Field(body, "stop")) {
    if (v->is_string()) {
      q.add_stop(v->get<std::string>());
    } else if (v->is_array() && v->size() <= 16) {
      for (const json& s : *v) {
        if (!s.is_string()) return Invalid("stop", "expected a string or a list of strings");
        q.add_stop(s.get<std::string>());
      }
    } else {
      return Invalid("stop", "expected a string or a list of at most 16 strings");
    }
  }
  if (const json* v = Field(body, "stream")) {
    auto b = Bool(*v, "stream");
    if (!b.ok()) return b.status();
    r.stream = *b;
  }
  if (const json* v = Field(body, "stream_options")) {
    if (!v->is_object()) return Invalid("stream_options", "expected an object");
    if (!r.stream) return Invalid("stream_options", "is only allowed with stream: true");
    if (auto it = v->find("include_usage"); it != v->end() && !it->is_null()) {
      auto b = Bool(*it, "stream_options.include_usage");
      if (!b.ok()) return b.status();
      r.include_usage = *b;
    }
  }
  if (const json* v = Field(body, "ignore_eos")) {
    auto b = Bool(*v, "ignore_eos");
    if (!b.ok()) return b.status();
    q.set_ignore_eos(*b);
  }

  // LayerSkip's own parameters.
  if (const json* v = Field(body, "mode")) {
    const std::string m = v->is_string() ? v->get<std::string>() : "";
    if (m == "autoregressive") q.set_mode(v1::DECODE_MODE_AUTOREGRESSIVE);
    else if (m == "early-exit" || m == "early_exit") q.set_mode(v1::DECODE_MODE_EARLY_EXIT);
    else if (m == "self-speculative" || m == "self_speculative") q.set_mode(v1::DECODE_MODE_SELF_SPECULATIVE);
    else return Invalid("mode", "expected \"autoregressive\", \"early-exit\" or \"self-speculative\"");
  }
  if (const json* v = Field(body, "exit_layer")) {
    if (v->is_string() && v->get<std::string>() == "auto") {
      q.set_auto_exit_layer(true);
    } else {
      auto e = Integer(*v, "exit_layer", 1, 1 << 16);
      if (!e.ok()) return Invalid("exit_layer", "expected an integer in [1, 65536] or \"auto\"");
      q.set_exit_layer(static_cast<int32_t>(*e));
    }
  }
  if (const json* v = Field(body, "speculations")) {
    if (v->is_string() && v->get<std::string>() == "auto") {
      q.set_auto_speculations(true);
    } else {
      auto d = Integer(*v, "speculations", 0, 64);
      if (!d.ok()) return Invalid("speculations", "expected an integer in [0, 64] or \"auto\"");
      q.set_speculations(static_cast<int32_t>(*d));
    }
  }

  // OpenAI features this server does not implement.
  for (absl::Status s : {Unsupported(body, "echo", false), Unsupported(body, "suffix", ""),
                         Unsupported(body, "presence_penalty", 0), Unsupported(body, "frequency_penalty", 0),
                         Unsupported(body, "logit_bias", json::object()), Unsupported(body, "best_of", 1),
                         Unsupported(body, "tools", json::array()), Unsupported(body, "top_logprobs", 0),
                         Unsupported(body, "logprobs", chat ? json(false) : json(0))})
    if (!s.ok()) return s;
  if (const json* v = Field(body, "response_format"))
    if (!v->is_object() || v->value("type", "") != "text") return Invalid("response_format", "only {\"type\": \"text\"} is supported");
  return r;
}

}  // namespace layerskip::coordinator::http
