// Keeps the models library non-empty until its first model lands; removed then.
namespace crmstream::models {}
