// An error answered to an HTTP client in OpenAI's error format, with its status code:
//   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
#pragma once

#include <string>

#include "tqlm/error.h"

namespace tqlm::server {

class ApiError : public Error {
 public:
  ApiError(int status, std::string type, std::string message, std::string param = "",
           std::string code = "")
      : Error(message), status_(status), type_(std::move(type)), param_(std::move(param)),
        code_(std::move(code)) {}

  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }  // the offending field, or ""
  const std::string& code() const { return code_; }

 private:
  int status_;
  std::string type_, param_, code_;
};

// 400 invalid_request_error about field `param`.
inline ApiError BadRequest(std::string message, std::string param = "") {
  return ApiError(400, "invalid_request_error", std::move(message), std::move(param));
}

}  // namespace tqlm::server
