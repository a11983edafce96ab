# Finds libtorch according to RECMOD_TORCH and defines the imported target
# recmod_torch (include dirs as SYSTEM so our warnings stay ours).
if(RECMOD_TORCH STREQUAL "python")
  find_package(Python3 REQUIRED COMPONENTS Interpreter)
  execute_process(
    COMMAND ${Python3_EXECUTABLE} -c "import torch; print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _torch_rc)
  if(NOT _torch_rc EQUAL 0)
    message(FATAL_ERROR "RECMOD_TORCH=python: '${Python3_EXECUTABLE} -c \"import torch\"' failed; install PyTorch or use -DRECMOD_TORCH=debian")
  endif()
  list(PREPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
  # A CUDA-enabled PyTorch needs the CUDA language for its config.
  find_package(Torch REQUIRED)
elseif(RECMOD_TORCH STREQUAL "debian")
  find_package(Torch REQUIRED)
else()
  message(FATAL_ERROR "RECMOD_TORCH must be 'debian' or 'python', got '${RECMOD_TORCH}'")
endif()
message(STATUS "recmod: libtorch ${Torch_VERSION} from ${RECMOD_TORCH} (${TORCH_INSTALL_PREFIX})")

add_library(recmod_torch INTERFACE)
target_link_libraries(recmod_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(recmod_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
if(TORCH_CXX_FLAGS)
  separate_arguments(_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
  target_compile_options(recmod_torch INTERFACE ${_torch_flags})
endif()
