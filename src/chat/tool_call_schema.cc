#include "chat/tool_call_schema.h"

#include <set>
#include <string>

#include "tqlm/error.h"

namespace tqlm::chat {

using Json = nlohmann::ordered_json;

void ValidateTools(const Json& tools) {
  if (!tools.is_array()) throw Error("tools: expected a JSON array of tool definitions");
  if (tools.empty()) throw Error("tools: the array is empty");
  std::set<std::string> names;
  for (size_t i = 0; i < tools.size(); ++i) {
    const Json& t = tools[i];
    const std::string where = "tools[" + std::to_string(i) + "]";
    if (!t.is_object()) throw Error(where + ": expected an object");
    const auto type = t.find("type");
    if (type == t.end() || *type != "function") {
      throw Error(where + ": \"type\" must be \"function\"");
    }
    const auto fn = t.find("function");
    if (fn == t.end() || !fn->is_object()) throw Error(where + ": \"function\" must be an object");
    const auto name = fn->find("name");
    if (name == fn->end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
      throw Error(where + ".function: \"name\" must be a non-empty string");
    }
    if (!names.insert(name->get<std::string>()).second) {
      throw Error(where + ".function: duplicate tool name \"" + name->get<std::string>() + "\"");
    }
    const auto desc = fn->find("description");
    if (desc != fn->end() && !desc->is_string()) {
      throw Error(where + ".function: \"description\" must be a string");
    }
    const auto params = fn->find("parameters");
    if (params != fn->end() && !params->is_object()) {
      throw Error(where + ".function: \"parameters\" must be a JSON schema object");
    }
  }
}

Json ParseToolsJson(std::string_view text) {
  Json tools;
  try {
    tools = Json::parse(text);
  } catch (const Json::exception& e) {
    throw Error(std::string("tools: not valid JSON: ") + e.what());
  }
  ValidateTools(tools);
  return tools;
}

}  // namespace tqlm::chat
