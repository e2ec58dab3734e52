// Keeps the evaluation library non-empty until its first evaluation lands; removed then.
namespace crmstream::evaluation {}
